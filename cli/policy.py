"""``microtune policy evaluate``: every candidate policy valued off-policy from the decision log."""

from __future__ import annotations

import json
from typing import Any

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
