"""``microtune policy evaluate``: every candidate policy valued off-policy from the decision log."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import AsJson, ExperimentName, Since, TruthPath, app, console, parse_time, settings

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
