"""``microtune simulate``: visitors of the simulated world through a running scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, console, progress, settings


@app.command()
def simulate(
    url: Annotated[
        str, typer.Option(help="Base URL of a running scorer (`microtune serve`).")
    ] = "http://127.0.0.1:8000",
    visitors: Annotated[int, typer.Option(min=1, help="Cart sessions to send, at most.")] = 1000,
    sessions: Annotated[
        int, typer.Option(min=10, help="Sessions of the generated day they are drawn from.")
    ] = 4000,
    seed: Annotated[int, typer.Option(help="Seed of the world and of every outcome.")] = 7,
    run: Annotated[
        str | None,
        typer.Option(help="Prefix of this run's session and event ids (default: r<unix time>)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where truth.parquet goes (default: $MICROTUNE_HOME/simulation)."),
    ] = None,
) -> None:
    """Send simulated visitors through the scorer over HTTP; they answer its decisions.

    Each visitor posts its browsing events, is scored, then buys, abandons or
    leaves at checkout as the world's true effects of what it was shown say
    (docs/experiments.md). The same seed, run name and decisions give the same
    run; each run's ids are new (the variant is a hash of the session id). The
    truth of every decision point goes to run=NAME/truth.parquet, never to the
    scorer. The scorer must not rate-limit this one client: start it with
    MICROTUNE_SERVE__RATE_LIMIT_SCORE_PER_MIN=0 and ..._EVENTS_PER_MIN=0.
    """
    from events.synth import GeneratorConfig
    from simulation.run import HttpChannel
    from simulation.run import simulate as simulate_run

    s = settings()
    target = out or s.paths.home / "simulation"
    cfg = GeneratorConfig(sessions=sessions, days=1, seed=seed)
    channel = HttpChannel(url)
    try:
        with progress() as bar:
            task = bar.add_task("visitors", total=None)
            result = simulate_run(
                channel, cfg, target, limit=visitors, run=run, on_visitor=lambda: bar.advance(task)
            )
    finally:
        channel.close()
    console.print(
        f"{result.visitors:,} visitors, {result.adjusted:,} adjusted, {result.exposed:,} exposed, "
        f"{result.purchases:,} purchases, {result.degraded:,} degraded answers "
        f"in {result.seconds} s; truth: {result.truth_path}"
    )
