"""``microtune policy``: value policies off-policy, register them, canary, gate and roll back.

``evaluate`` and ``gate`` read the decision log. ``register`` puts a policy file
in the MLflow registry (the first becomes the champion; later ones serve a
canary share beside it); ``promote`` runs the policy gate on the canary;
``rollback`` restores the previous champion; ``status`` shows what serves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import (
    AsJson,
    ExperimentName,
    Since,
    TruthPath,
    app,
    console,
    flows_on,
    parse_time,
    settings,
)

policy_app = typer.Typer(help="Decision policies: which one earns most?", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command()
def evaluate(
    experiment: ExperimentName = None,
    since: Since = None,
    truth: TruthPath = None,
    as_json: AsJson = False,
) -> None:
    """Value every arm as if it served all traffic, and `none`.

    Each session's first decision is one logged choice; its reward is
    the revenue it paid afterwards (net of discounts). Inverse propensity
    scoring and the doubly robust estimator give each candidate a value
    with a 95% interval; when a simulator's truth is found, the
    candidate's true value is shown beside it. Sessions without consent
    are left out (no order value is kept for them).
    """
    from experiments.policy_eval import evaluate_home

    out = evaluate_home(settings(), experiment=experiment, since=parse_time(since), truth=truth)
    if as_json:
        typer.echo(json.dumps(out))
        return
    show(out)


def show(out: dict[str, Any]) -> None:
    """Candidates as a table: DR and IPS estimates with intervals, and the truth when known."""
    title = (
        f"{out['experiment']} (policy version {out['policy_version']}): "
        f"{out['sessions']:,} sessions, {out['reward']}"
    )
    t = Table("policy", "doubly robust [95%]", "IPS [95%]", "true value", title=title)
    for p in out["policies"]:
        ips = p["ips"]
        t.add_row(
            p["name"],
            f"{p['value_estimate']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}]",
            f"{ips['value']:.2f} [{ips['ci_low']:.2f}, {ips['ci_high']:.2f}]",
            "–" if p["true_value"] is None else f"{p['true_value']:.2f}",
        )
    console.print(t)


@policy_app.command()
def gate(
    candidate: Annotated[str, typer.Option(help="The arm (or `none`) that would replace.")],
    current: Annotated[
        str, typer.Option(help="The policy it must beat: an arm, `none` or `logged`.")
    ] = "logged",
    experiment: ExperimentName = None,
    since: Since = None,
    as_json: AsJson = False,
) -> None:
    """Would CANDIDATE replace CURRENT? Only if its doubly robust gain is surely positive.

    Both are valued off-policy on the same logged sessions; the candidate passes
    when the whole 95% interval of the paired difference (candidate minus
    current, net revenue per session) lies above zero. Exits 1 when refused.
    """
    from experiments.policy_eval import gate_home

    out = gate_home(settings(), candidate, current, experiment=experiment, since=parse_time(since))
    if as_json:
        typer.echo(json.dumps(out))
    else:
        verdict = "[green]promote[/green]" if out["promote"] else "[red]refused[/red]"
        console.print(f"{out['experiment']} (policy version {out['policy_version']}): {verdict}")
        console.print(out["reason"])
    if not out["promote"]:
        raise typer.Exit(1)


CanaryShare = Annotated[
    float,
    typer.Option(
        "--canary",
        min=0.0,
        max=0.99,
        help="Share of sessions the new policy serves beside the champion until it is gated.",
    ),
]


@policy_app.command()
def register(
    path: Annotated[Path, typer.Argument(help="The policy YAML to register.")],
    canary: CanaryShare = 0.1,
    as_json: AsJson = False,
) -> None:
    """Register a policy file in MLflow as the challenger, served as a canary.

    The file is validated first. The first registered policy becomes the
    champion at once; a later one serves CANARY of the sessions beside the
    champion (its arms logged as `canary:<arm>`) until `microtune policy
    promote` gates it. The scorer picks the change up on its next registry poll.
    """
    from models import policy_registry, registry
    from serving.policy import Policy

    s = settings()
    policy = Policy.load(path)
    client = registry.configure(s.tracking_uri, s.artifact_root)
    version = policy_registry.register_policy(
        client,
        path.read_text(),
        policy_card(policy),
        canary_share=canary,
        artifact_root=s.artifact_root,
    )
    out = status_of(s)
    if as_json:
        typer.echo(json.dumps({"registered": version, **out}))
        return
    console.print(f"policy v{version} registered from {path}")
    show_status(out)


def policy_card(policy: Any) -> dict[str, Any]:
    """What a registered policy carries for people browsing the registry."""
    doc = policy.doc
    return {
        "source": policy.source,
        "experiment": doc.experiment.name,
        "arms": {
            v: {"weight": a.weight, "policy": a.policy or "rules", "params": a.params}
            for v, a in doc.experiment.variants.items()
        },
        "rules": [r.name for r in doc.rules if r.enabled],
        "guard_rails": doc.guard_rails.model_dump(),
        "bandit": None if doc.bandit is None else doc.bandit.model_dump(mode="json"),
    }


def status_of(s: Any) -> dict[str, Any]:
    from models import policy_registry, registry

    champion, canary, share = policy_registry.served_versions(registry.reader(s.tracking_uri))
    return {"champion": champion, "canary": canary, "canary_share": share}


def show_status(out: dict[str, Any]) -> None:
    if out["champion"] is None:
        console.print("no registered policy: the scorer serves its policy file")
        return
    line = f"champion: policy v{out['champion']}"
    if out["canary"]:
        line += f"; canary: v{out['canary']} on {out['canary_share']:.0%} of sessions"
    console.print(line)


@policy_app.command()
def status(as_json: AsJson = False) -> None:
    """Which registered policy serves, and which runs as a canary on what share."""
    out = status_of(settings())
    if as_json:
        typer.echo(json.dumps(out))
    else:
        show_status(out)


@policy_app.command("canary")
def set_canary(share: CanaryShare = 0.1) -> None:
    """Change the canary's share of sessions (0 stops it; the champion serves all)."""
    from models import policy_registry, registry

    s = settings()
    out = status_of(s)
    client = registry.configure(s.tracking_uri, s.artifact_root)
    version = registry.version_of(client, policy_registry.POLICY, registry.CHALLENGER)
    if version is None or version == out["champion"]:
        console.print(
            "[red]no challenger policy[/red]: register one with `microtune policy register`"
        )
        raise typer.Exit(1)
    policy_registry.set_canary_share(client, version, share)
    show_status(status_of(s))


@policy_app.command()
def promote(since: Since = None, as_json: AsJson = False) -> None:
    """Gate the canary policy against the champion; promote it if it surely earns more.

    Both are valued off-policy on the canary's decisions; the canary is
    promoted when the 95% interval of its doubly robust gain lies above zero.
    Otherwise it keeps serving its share. Exits 1 when refused or not ready.
    """
    from flows.policy_flows import promote_policy

    with flows_on(settings()):
        out = promote_policy(since=since)
    if as_json:
        typer.echo(json.dumps(out))
    elif "skipped" in out:
        console.print(f"[yellow]not gated[/yellow]: {out['skipped']}")
    else:
        verdict = "[green]promoted[/green]" if out["promote"] else "[red]kept as a canary[/red]"
        console.print(f"policy v{out['challenger']} against v{out['champion']}: {verdict}")
        console.print(out["reason"])
    if not out.get("promote"):
        raise typer.Exit(1)


@policy_app.command()
def rollback() -> None:
    """Serve the previous champion policy again."""
    from flows.policy_flows import rollback_policy

    with flows_on(settings()):
        r = rollback_policy()
    console.print(f"policy: champion v{r['replaced']} -> v{r['restored']}")


@policy_app.command()
def uplift(
    since: Since = None,
    truth: TruthPath = None,
    seed: Annotated[int, typer.Option(help="Seed of the folds and of LightGBM.")] = 0,
    as_json: AsJson = False,
) -> None:
    """Train the uplift model on the decision log, measure it, and register it.

    A T-learner on LightGBM: one purchase model per logged treatment, weighted
    by inverse propensities; the uplift policy gives each visitor the
    treatment with the highest expected net revenue. Prints each treatment's
    AUUC (area between its Qini curve and random targeting) and the uplift
    policy's off-policy value beside `none` and the logged mix, with the true
    values when a simulator's truth is found. Registers `microtune-uplift` in
    MLflow and writes the Qini plot under HOME/reports/uplift/.
    """
    from flows.policy_flows import train_uplift

    with flows_on(settings()):
        out = train_uplift(since=since, truth=str(truth) if truth else None, seed=seed)
    if as_json:
        typer.echo(json.dumps(out))
        return
    show_uplift(out)


def show_uplift(out: dict[str, Any]) -> None:
    """The uplift model's AUUC per treatment, then its policy valued beside `none`."""
    console.print(
        f"uplift model v{out['version']} on {out['sessions']:,} sessions; "
        f"treatments {', '.join(out['treatments'])}"
    )
    t = Table("treatment", "AUUC (net revenue per session)", "corr. with the true uplift")
    for key, area in out["auuc"].items():
        corr = out["true_uplift_correlation"].get(key)
        t.add_row(key, f"{area:+.3f}", "–" if corr is None else f"{corr:.2f}")
    console.print(t)
    show({"experiment": "uplift policy", "policy_version": out["version"], **out,
          "reward": "revenue per session, net of discounts"})  # fmt: skip
    console.print(f"Qini curves: {out['plot']}")
