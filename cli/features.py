"""``microtune features build`` and ``microtune features apply``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.app import console, features_app, flows_on, parse_time, settings


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
    from flows.feature_flow import build_features

    with flows_on(settings()):
        summary = build_features(
            start=parse_time(start),
            end=parse_time(end),
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
    from stores.feature_store import apply_definitions, ensure_uci, open_store

    s = settings()
    ensure_uci(s)
    r = apply_definitions(s, open_store(s), force=force)
    console.print("applied:" if r.changed else "unchanged: the registry matches feature_repo/")
    for change in r.changes:
        console.print(f"  {change}")
