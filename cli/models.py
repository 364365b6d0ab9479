"""``microtune train`` and ``microtune promote``: the model flows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.app import app, console, flows_on, settings


@app.command()
def train(
    seed: Annotated[int, typer.Option(help="Seed of every random source in training.")] = 0,
    every_n: Annotated[int, typer.Option(help="A decision point every N events.")] = 10,
    oracle: Annotated[
        Path | None,
        typer.Option(
            help="Generator oracle.parquet to compare AUC with (and ideal.parquet beside it)."
        ),
    ] = None,
) -> None:
    """Run the train flow: LightGBM and river on a time split, registered as challengers."""
    from flows.model_flows import train as train_flow

    with flows_on(settings()):
        r = train_flow(seed=seed, every_n=every_n, oracle=str(oracle) if oracle else None)
    t = Table("figure", "LightGBM", "river", title="train (hold-out window)")
    t.add_row("version (challenger)", r["versions"]["lgbm"], r["versions"]["river"])
    t.add_row(
        "ROC AUC",
        f"{r['lgbm']['test_roc_auc']:.4f}",
        f"{r['river']['test_progressive_roc_auc']:.4f} (progressive)",
    )
    t.add_row("ECE", f"{r['lgbm']['test_ece']:.4f}", "")
    if r.get("ideal_auc") is not None:
        t.add_row("ideal AUC (same rows: the best the events allow)", f"{r['ideal_auc']:.4f}", "")
    if r["oracle_auc"] is not None:
        t.add_row("oracle AUC (same rows: knows the latent state)", f"{r['oracle_auc']:.4f}", "")
    t.add_row("rows train/valid/test", " / ".join(str(v) for v in r["rows"].values()), "")
    console.print(t)
    for p in r["plots"]:
        console.print(f"plot: {p}")


@app.command()
def promote(
    rollback: Annotated[
        bool, typer.Option(help="Restore the previous champion instead of gating.")
    ] = False,
    model: Annotated[str, typer.Option(help="Model to roll back.")] = "abandonment-lgbm",
) -> None:
    """Run the promotion gate (or roll back to the previous champion)."""
    from flows.model_flows import promote as promote_flow
    from flows.model_flows import rollback as rollback_flow

    with flows_on(settings()):
        if rollback:
            r = rollback_flow(model=model)
        else:
            out = promote_flow()
    if rollback:
        console.print(f"{model}: champion v{r['replaced']} -> v{r['restored']}")
        return
    for name, d in out["decisions"].items():
        verdict = "[green]promoted[/green]" if d["promote"] else "[red]refused[/red]"
        console.print(f"{name}: {verdict}")
        for c in d["checks"]:
            mark = "ok " if c["passed"] else "FAIL"
            console.print(f"  {mark} {c['name']}: {c['detail']}")
    if not out["decisions"]:
        console.print("nothing to promote: every challenger already is the champion")
