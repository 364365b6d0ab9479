"""The ``microtune`` command line.

Every command reads the same settings (``MICROTUNE_*`` environment variables,
``--home`` and ``--profile`` override them) and keeps all state under the
home directory. Heavy libraries (Feast, Prefect) are imported inside the
commands that need them, so ``--help`` is instant.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.errors import MicrotuneError
from flows.settings import Settings, get_settings

console = Console(stderr=False)
err = Console(stderr=True)

app = typer.Typer(
    name="microtune",
    help="Real-time abandonment risk and micro-adjustments from web micro-behaviour events.\n\n"
    "State lives under MICROTUNE_HOME (default ./.microtune). Start with `microtune demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(help="Build, register and materialize features.", no_args_is_help=True)
app.add_typer(features_app, name="features")


@app.callback()
def _main(
    home: Annotated[
        Path | None, typer.Option(help="State directory (overrides MICROTUNE_HOME).")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="embedded (default) or production.")] = None,
) -> None:
    if home is not None:
        os.environ["MICROTUNE_HOME"] = str(home)
    if profile is not None:
        os.environ["MICROTUNE_PROFILE"] = profile
    get_settings.cache_clear()


def settings() -> Settings:
    s = get_settings()
    s.export_env()
    s.paths.ensure()
    return s


def _progress(out: Console | None = None) -> Progress:
    """The progress bar of long steps (shared by the commands and the demo)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out or console,
        transient=False,
    )


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"'{value}' is not an ISO time like 2026-06-01T13:00") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------


@app.command()
def info() -> None:
    """Show the active settings and where every piece of state lives."""
    s = settings()
    t = Table("what", "where", title=f"microtune ({s.profile} profile)")
    t.add_row("home", str(s.home))
    t.add_row("raw events", str(s.paths.raw_events))
    t.add_row("quarantine", str(s.paths.quarantine))
    t.add_row("offline features", str(s.paths.offline))
    t.add_row("feast repo", str(s.feature_repo))
    t.add_row("feast config", str(s.feature_store_yaml))
    t.add_row("mlflow", s.tracking_uri)
    t.add_row("reports", str(s.paths.reports))
    console.print(t)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Directory to write events/ and oracle.parquet to.")],
    sessions: Annotated[int, typer.Option(min=1, help="Number of sessions.")] = 20_000,
    days: Annotated[int, typer.Option(min=1, help="Days the sessions spread over.")] = 7,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    start: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default 2026-06-01).")
    ] = None,
    drift_day: Annotated[
        int | None, typer.Option(help="Day index from which behaviour drifts.")
    ] = None,
    bad_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of extra invalid rows and duplicates.")
    ] = 0.0,
    fmt: Annotated[
        Literal["jsonl", "parquet"], typer.Option("--format", help="jsonl or parquet.")
    ] = "jsonl",
) -> None:
    """Write a synthetic event log with known ground truth (oracle.parquet)."""
    from flows.generate import GeneratorConfig, write_event_log

    first = date.fromisoformat(start) if start else GeneratorConfig.start
    cfg = GeneratorConfig(
        sessions=sessions,
        days=days,
        seed=seed,
        start=first,
        drift_day=drift_day,
        bad_rate=bad_rate,
        fmt=fmt,
    )
    with _progress() as bar:
        task = bar.add_task("generating", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        log = write_event_log(cfg, out, progress=tick)
    console.print(
        f"wrote {log.events:,} events of {log.sessions:,} sessions ({log.users:,} users), "
        f"{log.bad_rows:,} invalid rows and {log.duplicates:,} duplicates to {out}"
    )


def _ingest_table(report: Any) -> Table:
    t = Table("ingest", "rows", title="ingest")
    t.add_row("files", f"{report.files:,}")
    t.add_row("rows read", f"{report.rows:,}")
    t.add_row("accepted", f"{report.accepted:,}")
    t.add_row("  of which without consent (minimized)", f"{report.unconsented:,}")
    t.add_row("duplicates dropped", f"{report.duplicates:,}")
    for reason, n in report.rejected.items():
        t.add_row(f"rejected: {reason}", f"{n:,}")
    return t


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="JSON Lines / Parquet files or directories.")],
) -> None:
    """Validate event files into the raw store; invalid rows go to quarantine with a reason."""
    from flows.ingest import IngestReport, RawEventStore, expand_paths, ingest_file

    s = settings()
    raw = RawEventStore(s.paths.raw_events)
    files = expand_paths(paths)
    report = IngestReport()
    with _progress() as bar:
        task = bar.add_task("ingesting", total=len(files))
        for f in files:
            report.merge(ingest_file(f, raw, s.paths.quarantine))
            bar.advance(task)
    console.print(_ingest_table(report))
    if report.quarantine_files:
        console.print(f"rejected rows and their reasons: {s.paths.quarantine}")


@features_app.command("build")
def features_build(
    start: Annotated[str | None, typer.Option(help="Window start (ISO time, UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Window end (ISO time, UTC).")] = None,
    hours: Annotated[int | None, typer.Option(help="Build the last N hours instead.")] = None,
    inbox: Annotated[
        list[Path] | None, typer.Option(help="Event files or directories to ingest first.")
    ] = None,
) -> None:
    """Run the build_features flow: ingest, validate, build, feast apply, materialize."""
    settings()
    from flows.feature_flow import build_features

    summary = build_features(
        start=_parse_time(start),
        end=_parse_time(end),
        hours=hours,
        inbox=[str(p) for p in inbox] if inbox else None,
    )
    _print_build(summary)


def _print_build(summary: Any) -> None:
    t = Table("feature build", "count", title=f"features {summary.start} .. {summary.end}")
    for k in ("events", "consented", "session_rows", "sessions", "ended_sessions", "user_rows"):
        t.add_row(k.replace("_", " "), f"{summary.build.get(k, 0):,}")
    t.add_row("feast apply", "applied" if summary.applied else "unchanged")
    for k, v in summary.online_rows.items():
        t.add_row(f"online rows: {k}", f"{v:,}")
    console.print(t)


@features_app.command("apply")
def features_apply(
    force: Annotated[bool, typer.Option(help="Apply even if nothing changed.")] = False,
) -> None:
    """Register the feature repo's definitions (like `feast apply`)."""
    from flows.feaststore import apply_definitions, ensure_uci, open_store

    s = settings()
    ensure_uci(s)
    r = apply_definitions(s, open_store(s), force=force)
    console.print("applied:" if r.changed else "unchanged: the registry matches feature_repo/")
    for change in r.changes:
        console.print(f"  {change}")


@app.command()
def train(
    seed: Annotated[int, typer.Option(help="Seed of every random source in training.")] = 0,
    every_n: Annotated[int, typer.Option(help="A decision point every N events.")] = 10,
    oracle: Annotated[
        Path | None, typer.Option(help="Generator oracle.parquet to compare AUC with.")
    ] = None,
) -> None:
    """Run the train flow: LightGBM and river on a time split, registered as challengers."""
    settings()
    from flows.model_flows import train as train_flow

    r = train_flow(seed=seed, every_n=every_n, oracle=str(oracle) if oracle else None)
    t = Table("figure", "LightGBM", "river", title="train (hold-out window)")
    t.add_row("version (challenger)", r["versions"]["lgbm"], r["versions"]["river"])
    t.add_row(
        "ROC AUC",
        f"{r['lgbm']['test_roc_auc']:.4f}",
        f"{r['river']['test_progressive_roc_auc']:.4f} (progressive)",
    )
    t.add_row("ECE", f"{r['lgbm']['test_ece']:.4f}", "")
    if r["oracle_auc"] is not None:
        t.add_row("oracle AUC (same rows)", f"{r['oracle_auc']:.4f}", "")
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
    settings()
    from flows.model_flows import promote as promote_flow
    from flows.model_flows import rollback as rollback_flow

    if rollback:
        r = rollback_flow(model=model)
        console.print(f"{model}: champion v{r['replaced']} -> v{r['restored']}")
        return
    out = promote_flow()
    for name, d in out["decisions"].items():
        verdict = "[green]promoted[/green]" if d["promote"] else "[red]refused[/red]"
        console.print(f"{name}: {verdict}")
        for c in d["checks"]:
            mark = "ok " if c["passed"] else "FAIL"
            console.print(f"  {mark} {c['name']}: {c['detail']}")
    if not out["decisions"]:
        console.print("nothing to promote: every challenger already is the champion")


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
    settings()
    from flows.drift_flow import check_drift, parse_window

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


@app.command()
def demo(
    sessions: Annotated[int, typer.Option(help="Sessions to generate.")] = 24_000,
    days: Annotated[int, typer.Option(help="Days of events, ending yesterday.")] = 8,
    drift_day: Annotated[
        int | None, typer.Option(help="0-based day from which behaviour drifts (default days-2).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    bad_rate: Annotated[float, typer.Option(help="Share of invalid rows.")] = 0.01,
) -> None:
    """The whole cycle on this home: generate, build, train, promote, drift check, serve.

    Ends with live events and scores through HTTP and a summary; stops the
    scorer it started. See flows/demo.py for the steps.
    """
    from flows.demo import run_demo

    run_demo(
        settings(),
        sessions=sessions,
        days=days,
        seed=seed,
        bad_rate=bad_rate,
        console=console,
        drift_day=drift_day,
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Start the online scorer (POST /v1/score, /v1/events; docs at /docs)."""
    import shutil

    import uvicorn

    s = settings()
    if workers > 1:  # Prometheus samples of every worker, aggregated by /metrics
        prom = s.paths.serving / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    console.print(f"microtune scorer on http://{host}:{port} (home {s.home}, profile {s.profile})")
    console.print(f"  API docs:   http://{host}:{port}/docs")
    for line in ui_commands(s):
        console.print(f"  {line}")
    uvicorn.run(
        "serving.app:factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )


def ui_commands(s: Settings) -> list[str]:
    """Commands that open Prefect's, MLflow's and Feast's UIs on this home."""
    env = f"MICROTUNE_HOME={s.home}"
    return [
        f"Prefect UI: {env} PREFECT_HOME={s.paths.prefect} prefect server start",
        f"MLflow UI:  mlflow ui --backend-store-uri {s.tracking_uri} --port 5000",
        f"Feast UI:   {env} feast -c {s.feature_repo} -f {s.feature_store_yaml} ui --port 8888",
    ]


@app.command()
def deploy(
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Register only this flow/deployment (repeatable)."),
    ] = None,
) -> None:
    """Register the deployments of prefect.yaml (schedules, parameters, limits) on the server."""
    from flows.deploy import load_config, pool_name, register, worker_command

    s = settings()
    names = register(s, only)
    for name in names:
        console.print(f"deployed {name}")
    console.print(f"work pool: {pool_name(load_config())}; run them with `microtune worker`")
    console.print(" ".join(worker_command(s)), soft_wrap=True)


@app.command()
def worker(
    name: Annotated[str | None, typer.Option(help="Worker name shown in the UI.")] = None,
) -> None:
    """Start a process worker on the deployments' work pool (runs until stopped)."""
    from flows.deploy import worker_command

    cmd = worker_command(settings(), name)
    console.print(" ".join(cmd), soft_wrap=True)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


def main() -> None:
    """Entry point that turns microtune's own errors into a clear message and exit code 2."""
    try:
        app()
    except MicrotuneError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
