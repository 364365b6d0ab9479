"""``microtune demo``: the main job end to end on the embedded profile.

Generates a realistic week of events (with some invalid rows and drift late
in the week), then runs the ``build_features`` flow over it (ingest, validate,
build, feast apply, materialize) and reads a few sessions back from the online
store through Feast, the way the scorer will.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from flows.settings import Settings


def run_demo(
    settings: Settings, *, sessions: int, days: int, seed: int, bad_rate: float, console: Console
) -> dict[str, Any]:
    """Run the demo and print its summary; returns the figures for tests."""
    from flows.generate import GeneratorConfig, write_event_log

    t0 = time.perf_counter()
    first_day = (datetime.now(UTC) - timedelta(days=days)).date()
    out = settings.home / "generated" / f"seed-{seed}-{first_day.isoformat()}"
    cfg = GeneratorConfig(
        sessions=sessions,
        days=days,
        seed=seed,
        start=first_day,
        drift_day=max(days - 2, 1),
        bad_rate=bad_rate,
    )
    console.rule("[bold]1/3 generate")
    log = write_event_log(cfg, out)
    console.print(
        f"{log.events:,} events, {log.sessions:,} sessions, {log.bad_rows:,} invalid rows, "
        f"{log.duplicates:,} duplicates -> {out}"
    )

    console.rule("[bold]2/3 build_features flow (ingest, validate, build, apply, materialize)")
    from flows.feature_flow import build_features

    summary = build_features(inbox=[str(out / "events")])

    console.rule("[bold]3/3 read back from the online store")
    sample = _online_sample(settings, summary)
    figures = {
        "events": log.events,
        "accepted": summary.ingest["accepted"],
        "duplicates": summary.ingest["duplicates"],
        "rejected": summary.ingest["rejected"],
        "session_rows": summary.build["session_rows"],
        "online_rows": summary.online_rows,
        "sample": sample,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    _print_summary(settings, figures, console)
    return figures


def _online_sample(settings: Settings, summary: Any) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from flows.feaststore import open_store

    store = open_store(settings)
    files = sorted(settings.paths.session_features.glob("*.parquet"))
    last = pq.read_table(files[-1], columns=["session_id", "event_count"])
    sid = last.column("session_id")[0].as_py()
    row = store.get_online_features(
        features=store.get_feature_service("abandonment_v1"),
        entity_rows=[
            {
                "session_id": sid,
                "user_id": "",
                "request_ts": time.time(),
                "device": "mobile",
                "page_type": "product",
            }
        ],
    ).to_dict()
    return {"session_id": sid, **{k: v[0] for k, v in row.items()}}


def _print_summary(settings: Settings, f: dict[str, Any], console: Console) -> None:
    t = Table("figure", "value", title="microtune demo")
    t.add_row("events generated", f"{f['events']:,}")
    t.add_row("accepted", f"{f['accepted']:,}")
    t.add_row("duplicates dropped", f"{f['duplicates']:,}")
    for reason, n in f["rejected"].items():
        t.add_row(f"rejected: {reason}", f"{n:,}")
    t.add_row("session feature rows", f"{f['session_rows']:,}")
    for k, v in f["online_rows"].items():
        t.add_row(f"online rows: {k}", f"{v:,}")
    s = f["sample"]
    t.add_row("sample session", s["session_id"])
    for k in ("event_count", "hover_ms_ewm", "cart_adds", "session_age_s", "is_mobile"):
        v = s.get(k)
        t.add_row(f"  {k}", "—" if v is None else f"{v:,.2f}")
    t.add_row("took", f"{f['seconds']} s")
    t.add_row("raw events", str(settings.paths.raw_events))
    t.add_row("quarantine", str(settings.paths.quarantine))
    t.add_row("offline features", str(settings.paths.offline))
    console.print(t)
