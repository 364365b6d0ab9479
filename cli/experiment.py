"""``microtune experiment analyze``: the experiment analysis flow."""

from __future__ import annotations

import json
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

experiment_app = typer.Typer(help="Experiments: did the decisions help?", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command()
def analyze(
    experiment: ExperimentName = None,
    since: Since = None,
    exposed: Annotated[
        bool, typer.Option(help="Count only sessions whose adjustment was shown (exposure).")
    ] = False,
    truth: TruthPath = None,
    as_json: AsJson = False,
) -> None:
    """Run the analyze_experiment flow: outcomes joined to decisions, lift per arm, a verdict.

    Checks the sample ratio first (a mismatch blocks any verdict), then gives
    each arm's conversion, its lift against control with 95% and always-valid
    intervals, the chance to beat control, CUPED, per risk decile and device,
    and the revenue and margin guard rails. Writes an HTML report and logs an
    MLflow run. When a simulator's truth is found, each arm's true lift is shown
    beside its estimate.
    """
    from flows.experiment_flow import analyze_experiment

    with flows_on(settings()):
        out = analyze_experiment(
            experiment=experiment,
            since=parse_time(since),
            exposed_only=exposed,
            truth=str(truth) if truth else None,
        )
    if as_json:
        typer.echo(json.dumps(summary(out)))
        return
    show(out)


def summary(out: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` object: experiment, srm_p_value, verdict, and the arms."""
    keys = ("name", "sessions", "conversions", "rate", "lift", "ci_low", "ci_high", "p_value")
    arms = []
    for a in out["arms"]:
        arm = {k: a[k] for k in keys}
        arm["chance_to_beat_control"] = a["chance_to_beat_control"]
        if a["true_lift"] is not None:
            arm["true_lift"] = a["true_lift"]
        arms.append(arm)
    return {
        "experiment": out["experiment"],
        "srm_p_value": out["srm_p_value"],
        "verdict": out["verdict"],
        "reason": out["reason"],
        "exposure": out["exposure"],
        "arms": arms,
        "report": out["report"],
    }


def show(out: dict[str, Any]) -> None:
    """The arms as a table (lift with its 95% interval, the true lift when known)."""
    t = Table("arm", "sessions", "rate", "lift [95% interval]", "P(beat)", "true lift")
    for a in out["arms"]:
        lift = "–"
        if a["lift"] is not None:
            lift = f"{a['lift']:+.4f} [{a['ci_low']:+.4f}, {a['ci_high']:+.4f}]"
        t.add_row(
            a["name"],
            f"{a['sessions']:,}",
            "–" if a["rate"] is None else f"{a['rate']:.4f}",
            lift,
            "–" if a["chance_to_beat_control"] is None else f"{a['chance_to_beat_control']:.3f}",
            "–" if a["true_lift"] is None else f"{a['true_lift']:+.4f}",
        )
    console.print(t)
    for a in out["arms"]:
        if a["seq_ci_low"] is not None:
            console.print(
                f"{a['name']}: always-valid interval [{a['seq_ci_low']:+.4f}, "
                f"{a['seq_ci_high']:+.4f}]; {a['verdict']}"
            )
    console.print(f"verdict: [bold]{out['verdict']}[/bold]: {out['reason']}")
    console.print(f"sample-ratio test p = {out['srm_p_value']:.3g} ({out['exposure']})")
    for alert in out.get("alerts", []):
        console.print(f"[red]alert: {alert}[/red]")
    console.print(f"report: {out['report']}")
