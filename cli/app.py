"""The ``microtune`` command line's root: the app, its global options and shared helpers.

Every command reads the same settings (``MICROTUNE_*`` environment variables,
``--home`` and ``--profile`` override them), once, here at the edge of the
process, and passes them down. Heavy libraries (Feast, Prefect, MLflow) are
imported inside the commands that need them, so ``--help`` is instant.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import MicrotuneError
from core.settings import Settings, get_settings

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
    """The settings of this command, read once; every state directory exists."""
    s = get_settings()
    s.paths.ensure()
    return s


@contextlib.contextmanager
def flows_on(s: Settings) -> Iterator[None]:
    """Run flows on ``s``: Prefect on the home's server, the flows on these settings."""
    from flows.context import use_settings
    from flows.server import configure_prefect

    configure_prefect(s)
    with use_settings(s):
        yield


def progress(out: Console | None = None) -> Progress:
    """The progress bar of long steps (shared by the commands and the demo)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out or console,
        transient=False,
    )


#: Options the experiment and policy commands share.
ExperimentName = Annotated[
    str | None,
    typer.Option("--experiment", help="Experiment name (default: the one with most sessions)."),
]
Since = Annotated[
    str | None, typer.Option("--since", help="First decision time, ISO (default: 30 days ago).")
]
TruthPath = Annotated[
    Path | None,
    typer.Option(
        "--truth", help="A simulator's truth.parquet or folder (default: HOME/simulation)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"'{value}' is not an ISO time like 2026-06-01T13:00") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


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


def main() -> None:
    """Entry point that turns microtune's own errors into a clear message and exit code 2."""
    try:
        app()
    except MicrotuneError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
