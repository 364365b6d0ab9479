"""``microtune generate`` and ``microtune ingest``: event logs in."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from cli.app import app, console, progress, settings


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
    ideal: Annotated[
        bool,
        typer.Option(
            help="Also write ideal.parquet: the best risk the events allow at every "
            "decision point (about 0.5 s per 1,000 sessions)."
        ),
    ] = True,
) -> None:
    """Write a synthetic event log with known ground truth (oracle.parquet, ideal.parquet)."""
    from events.synth import GeneratorConfig, write_event_log

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
    with progress() as bar:
        task = bar.add_task("generating", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        log = write_event_log(cfg, out, progress=tick, ideal=ideal)
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
    paths: Annotated[
        list[Path],
        typer.Argument(help="JSON Lines (.jsonl, optionally .gz) / Parquet files or directories."),
    ],
) -> None:
    """Validate event files into the raw store; invalid rows go to quarantine with a reason.

    A bad row never stops the run: it is quarantined with its reason and the
    other rows are stored. Re-ingesting a file adds nothing and rewrites the
    same quarantine file. Exit code 0 unless a named path cannot be read.
    """
    from core.privacy import pseudonymizer
    from events.ingest import IngestReport, expand_paths, ingest_file
    from events.raw_store import RawEventStore

    s = settings()
    raw = RawEventStore(s.paths.raw_events)
    pseudonymize = pseudonymizer(s)  # user ids are never stored raw
    report = IngestReport()
    files = expand_paths(paths, report.skipped)
    with progress() as bar:
        task = bar.add_task("ingesting", total=len(files))
        for f in files:
            report.merge(ingest_file(f, raw, s.paths.quarantine, pseudonymize=pseudonymize))
            bar.advance(task)
    console.print(_ingest_table(report))
    for path, reason in report.skipped.items():
        console.print(f"[yellow]not read:[/yellow] {path}: {reason}")
    if report.quarantine_files:
        console.print(f"rejected rows and their reasons: {s.paths.quarantine}")


raw_app = typer.Typer(help="Look after the raw event store.", no_args_is_help=True)
app.add_typer(raw_app, name="raw")


@raw_app.command("repair")
def raw_repair() -> None:
    """Keep the first copy of every event id store-wide, and rebuild the store's index.

    Stores written before ingest deduplicated across days can hold an event
    twice; the feature build refuses such a window. Safe to run again.
    """
    from events.raw_store import RawEventStore

    s = settings()
    raw = RawEventStore(s.paths.raw_events)
    before = raw.duplicate_ids()
    removed, rewritten = raw.repair()
    console.print(
        f"duplicate ids found: {before:,}; copies removed: {removed:,}; "
        f"part files rewritten: {rewritten:,}"
    )


@app.command()
def retention(
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Run the `apply_retention` flow: delete personal data older than its retention.

    Raw events and the scorer's ingested inbox files after
    MICROTUNE_RETENTION__RAW_EVENTS_DAYS (180), decisions after
    MICROTUNE_RETENTION__DECISIONS_DAYS (180), quarantined rows after
    MICROTUNE_RETENTION__QUARANTINE_DAYS (30). The daily deployment runs it too.
    """
    import json

    from cli.app import flows_on
    from flows.retention_flow import apply_retention

    with flows_on(settings()):
        out = apply_retention()
    if as_json:
        typer.echo(json.dumps(out))
        return
    t = Table("store", "removed", "older than", title="retention")
    t.add_row("raw events (rows)", f"{out['raw_events']:,}", out["cutoffs"]["raw_events"])
    t.add_row("ingested inbox files", f"{out['inbox_files']:,}", out["cutoffs"]["raw_events"])
    t.add_row("decisions (rows)", f"{out['decisions']:,}", out["cutoffs"]["decisions"])
    t.add_row("quarantine files", f"{out['quarantine_files']:,}", out["cutoffs"]["quarantine"])
    console.print(t)
