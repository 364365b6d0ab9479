"""``microtune drift``: the drift check flow."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.app import app, console, flows_on, settings


@app.command()
def drift(
    window: Annotated[
        str, typer.Option(help="Current window: the last 48h, 2d, 90m… of served decisions.")
    ] = "48h",
    retrain: Annotated[
        bool, typer.Option(help="Retrain and promote when drift or performance fails.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the sampling and of any retraining.")] = 0,
) -> None:
    """Run the check_drift flow: the recent window against the champion's training data."""
    from flows.drift_flow import check_drift
    from monitoring.windows import parse_window

    with flows_on(settings()):
        out = check_drift(window_hours=parse_window(window), retrain_on_fail=retrain, seed=seed)
    v = out["verdict"]
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}.get(v["status"], "white")
    console.print(f"drift verdict: [{colour}]{v['status']}[/{colour}] ({v['windows']['source']})")
    for c in v["checks"]:
        console.print(f"  {c['status']:>7} {c['name']}: {c['detail']}")
    console.print(f"report: {out['report']}")
    if out["retrain"] is not None:
        promoted = out["retrain"]["promoted"] or "nothing"
        console.print(f"retrained {out['retrain']['versions']}; promoted {promoted}")
