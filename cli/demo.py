"""``microtune demo``: the whole cycle end to end on the embedded profile.

1. Generate a realistic week of events ending yesterday: invalid rows,
   duplicates, and drift (behaviour and its link to abandonment) from the
   sixth day on.
2. The days before the drift arrive first: the ``build_features`` flow
   ingests, validates, builds and materializes them.
3. The ``train`` flow trains LightGBM and river and registers them in MLflow;
   the ``promote`` flow gates them and promotes the champions.
4. The drifted days arrive: ``build_features`` again.
5. The ``check_drift`` flow compares them with the champion's training window
   (Evidently HTML report, verdict). The demo does not retrain on a failing
   verdict; the scheduled deployment does (``docs/deployments.md``).
6. ``microtune serve`` starts in its own process. 5,000 simulated visitors
   (``microtune simulate``, docs/experiments.md) go through real HTTP: their
   events to ``POST /v1/events``, a ``POST /v1/score``, then their answer to
   the decision (exposure, checkout, purchase) as the world's true effects
   say. Their truth goes to ``simulation/truth.parquet``. One arm of the
   shipped policy is a contextual bandit that learns from the purchases live.
7. The ``analyze_experiment`` flow joins outcomes to decisions and analyses
   the policy's experiment: each variant against control, its measured lift,
   its interval, and the true lift.
8. ``microtune policy evaluate`` values ``none`` and every arm as if it
   served all the traffic, off-policy from the same log, beside each one's
   true value.
9. The ``train_uplift`` flow (``microtune policy uplift``) fits the uplift
   model on the same log, measures it (Qini curves, AUUC), values its policy
   off-policy beside its true value, and registers it in MLflow.
10. A summary is printed and the server is stopped.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from cli.app import app, console, flows_on, progress, settings
from cli.demo_live import LIVE_VISITORS, live_traffic, print_summary
from core.settings import Settings

STEPS = 11


def _step(console: Console, n: int, title: str) -> None:
    console.rule(f"[bold]{n}/{STEPS} {title}")


def run_demo(
    settings: Settings,
    *,
    sessions: int,
    days: int,
    seed: int,
    bad_rate: float,
    console: Console,
    drift_day: int | None = None,
    visitors: int = LIVE_VISITORS,
) -> dict[str, Any]:
    """Run the demo and print its summary; returns the figures for tests."""
    from events.synth import GeneratorConfig, write_event_log

    t0 = time.perf_counter()
    if any(settings.paths.raw_events.glob("date=*")):
        console.print(
            f"[yellow]{settings.home} already holds events: rows seen before count as "
            "duplicates and the new models are gated against the current champions. "
            "`make clean` (or a new MICROTUNE_HOME) starts from scratch.[/yellow]"
        )
    drift_day = max(days - 2, 1) if drift_day is None else drift_day
    first_day = (datetime.now(UTC) - timedelta(days=days)).date()
    out = settings.home / "generated" / f"seed-{seed}-{first_day.isoformat()}"
    cfg = GeneratorConfig(
        sessions=sessions,
        days=days,
        seed=seed,
        start=first_day,
        bad_rate=bad_rate,
        drift_day=drift_day,
    )
    _step(console, 1, f"generate ({days} days, drift from day {drift_day + 1})")
    with progress(console) as bar:
        task = bar.add_task("events", total=None)
        log = write_event_log(
            cfg, out, lambda done, total: bar.update(task, completed=done, total=total)
        )
    console.print(
        f"{log.events:,} events, {log.sessions:,} sessions, {log.bad_rows:,} invalid rows, "
        f"{log.duplicates:,} duplicates -> {out}"
    )
    drift_start = (first_day + timedelta(days=drift_day)).isoformat()
    early = [str(p) for p in log.files if p.name[:10] < drift_start]
    late = [str(p) for p in log.files if p.name[:10] >= drift_start]

    from flows.drift_flow import check_drift
    from flows.feature_flow import build_features
    from flows.model_flows import promote, train
    from flows.segment_flow import segment_sessions

    _step(console, 2, "build_features: the days before the drift")
    first = build_features(inbox=early)
    _step(console, 3, "train: LightGBM and river, tracked in MLflow")
    trained = train(seed=seed)
    _step(console, 4, "promote: the gate")
    promoted = promote()
    _step(console, 5, "segment_sessions: micro-segments of the sessions before the drift")
    segments = segment_sessions()
    _step(console, 6, "build_features: the drifted days arrive")
    second = build_features(inbox=late)
    _step(console, 7, "check_drift: the new days against the champion's training window")
    drift = check_drift(
        window_hours=48.0, retrain_on_fail=False, seed=seed, resegment_on_fail=False
    )
    _step(console, 8, "serve: simulated visitors through HTTP, answering the decisions")
    live = live_traffic(settings, console, visitors)
    experiment, policies = _judge(settings, console)
    _step(console, 11, "uplift: a T-learner on the same log, its Qini curves, its value")
    uplift = _uplift(console)

    accepted = first.ingest["accepted"] + second.ingest["accepted"]
    rejected: Counter[str] = Counter(first.ingest["rejected"])
    rejected.update(second.ingest["rejected"])
    figures = {
        "events": log.events,
        "accepted": accepted,
        "duplicates": first.ingest["duplicates"] + second.ingest["duplicates"],
        "rejected": dict(rejected),
        "train": trained,
        "promote": promoted,
        "segments": segments,
        "drift": drift,
        "live": live,
        "experiment": experiment,
        "policies": policies,
        "uplift": uplift,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print_summary(settings, figures, console)
    return figures


def _judge(settings: Settings, console: Console) -> tuple[dict[str, Any], dict[str, Any]]:
    """Steps 9 and 10: the experiment analysis, then every arm valued off-policy."""
    from cli.experiment import show
    from cli.policy import show as show_policies
    from experiments.policy_eval import evaluate_home
    from flows.experiment_flow import analyze_experiment

    _step(console, 9, "analyze_experiment: did the decisions help? (beside the world's truth)")
    experiment = analyze_experiment()
    show(experiment)
    _step(console, 10, "policy evaluate: every arm valued off-policy (beside its true value)")
    policies = evaluate_home(settings)
    show_policies(policies)
    return experiment, policies


def _uplift(console: Console) -> dict[str, Any] | None:
    """Step 11; a log too small for the model is reported, not fatal."""
    from cli.policy import show_uplift
    from core.errors import MicrotuneError
    from flows.policy_flows import train_uplift

    try:
        out = train_uplift()
    except (MicrotuneError, ValueError) as exc:
        console.print(f"[yellow]uplift model skipped[/yellow]: {exc}")
        return None
    show_uplift(out)
    return out


@app.command()
def demo(
    sessions: Annotated[int, typer.Option(help="Sessions to generate.")] = 24_000,
    days: Annotated[int, typer.Option(help="Days of events, ending yesterday.")] = 8,
    drift_day: Annotated[
        int | None, typer.Option(help="0-based day from which behaviour drifts (default days-2).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    bad_rate: Annotated[float, typer.Option(help="Share of invalid rows.")] = 0.01,
    visitors: Annotated[
        int, typer.Option(min=1, help="Simulated visitors sent through the scorer.")
    ] = LIVE_VISITORS,
    profile: Annotated[
        Literal["embedded", "production"] | None,
        typer.Option(
            help="embedded (default) or production: the online store on Redis, the Feast "
            "registry and MLflow on PostgreSQL (MICROTUNE_REDIS_URL, MICROTUNE_POSTGRES_URL); "
            "the flows run on `microtune server` when it runs (Prefect's state in PostgreSQL)."
        ),
    ] = None,
) -> None:
    """The whole cycle on this home: generate, build, train, promote, drift check, serve.

    Ends with live events and scores through HTTP and a summary; stops the
    scorer it started. See cli/demo.py for the steps. `--profile production`
    runs the same cycle on the production stores.
    """
    s = settings()
    if profile is not None:
        s = s.override(profile=profile)
    with flows_on(s):
        run_demo(
            s,
            sessions=sessions,
            days=days,
            seed=seed,
            bad_rate=bad_rate,
            console=console,
            drift_day=drift_day,
            visitors=visitors,
        )
