"""Drive simulated visitors through the scorer and keep the truth beside its decisions.

Each visitor sends its browsing events (``POST /v1/events``), asks for a
decision (``POST /v1/score``), then, from what it was shown, the world draws
its ending: an ``exposure`` event when the front end showed an adjustment,
then a checkout and a purchase, or nothing. Those events go through
``POST /v1/events`` too. The run writes the truth of every decision point to
``truth.parquet`` (:func:`simulation.visitors.truth_row`); the scorer never
sees it.

Two channels reach the same scoring core: :class:`HttpChannel`, a real server
over HTTP (``microtune simulate``, the demo), and :class:`InProcessChannel`,
the :class:`serving.scorer.Scorer` of this process (large benchmarks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from events.synth import GeneratorConfig
from simulation.visitors import Visitor, ending, truth_row, visitors


class Channel(Protocol):
    """How a visitor reaches the scorer."""

    def send(self, events: list[dict[str, Any]]) -> dict[str, Any]: ...

    def score(self, body: dict[str, Any]) -> dict[str, Any]: ...


class HttpChannel:
    """A running scorer, over HTTP."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.client = httpx.Client(base_url=url, timeout=timeout)
        #: Seconds each score took, end to end; events accepted and rejected.
        self.latencies: list[float] = []
        self.accepted = self.rejected = 0

    def send(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        r = self.client.post("/v1/events", json={"events": events})
        _check(r)
        out = r.json()
        self.accepted += out["accepted"]
        self.rejected += len(out["rejected"])
        return out

    def score(self, body: dict[str, Any]) -> dict[str, Any]:
        t = time.perf_counter()
        r = self.client.post("/v1/score", json=body)
        self.latencies.append(time.perf_counter() - t)
        _check(r)
        return r.json()

    def close(self) -> None:
        self.client.close()


def _check(r: httpx.Response) -> None:
    if r.status_code == 429:
        raise RuntimeError(
            "the scorer rate-limits the simulator, which sends every visitor from one "
            "client: start it with MICROTUNE_SERVE__RATE_LIMIT_SCORE_PER_MIN=0 and "
            "MICROTUNE_SERVE__RATE_LIMIT_EVENTS_PER_MIN=0"
        )
    r.raise_for_status()


class InProcessChannel:
    """The scoring core of this process: the same code as the server, without HTTP."""

    def __init__(self, scorer: Any) -> None:
        from serving.schemas import EventBatch, ScoreRequest

        self.scorer, self._batch, self._request = scorer, EventBatch, ScoreRequest

    def send(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        return self.scorer.events(self._batch(events=events))

    def score(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.scorer.score(self._request.model_validate(body))


@dataclass
class SimulationResult:
    visitors: int
    decisions: int
    adjusted: int
    exposed: int
    purchases: int
    degraded: int
    truth_path: Path
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "truth_path": str(self.truth_path)}


def simulate(
    channel: Channel,
    cfg: GeneratorConfig,
    out_dir: Path,
    *,
    limit: int | None = None,
    run: str | None = None,
    clock: Callable[[], float] = time.time,
    on_visitor: Callable[[], None] | None = None,
) -> SimulationResult:
    """Run the cart sessions of ``cfg`` as visitors through ``channel``.

    Each visitor arrives at ``clock()`` (its events shifted to end then: the
    API takes only recent events). ``on_visitor`` is called after each visitor
    (progress).
    """
    t0 = time.perf_counter()
    run = run if run is not None else f"r{int(clock())}"
    people = visitors(cfg, limit, run=f"{run}-" if run else "")
    rows = []
    degraded = 0
    for v in people:
        row, was_degraded = visit(channel, v, cfg.seed, clock)
        rows.append(row)
        degraded += was_degraded
        if on_visitor is not None:
            on_visitor()
    # One folder a run: the analysis reads every run's truth under out_dir.
    path = out_dir / f"run={run or 'default'}" / "truth.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return SimulationResult(
        visitors=len(people),
        decisions=len(rows),
        adjusted=sum(r["action"] != "none" for r in rows),
        exposed=sum(r["exposed"] for r in rows),
        purchases=sum(r["purchased"] for r in rows),
        degraded=degraded,
        truth_path=path,
        seconds=round(time.perf_counter() - t0, 1),
    )


def visit(
    channel: Channel, v: Visitor, seed: int, clock: Callable[[], float]
) -> tuple[dict[str, Any], bool]:
    """One visitor: browse, be scored, answer; its truth row and whether it was degraded."""
    events = v.arrive(clock())
    channel.send(events)
    last = events[-1]
    out = channel.score(
        {
            "session_id": v.session_id,
            "user_id": v.user_id,
            "context": {"device": v.device, "page_type": last["page_type"]},
        }
    )
    # The ending happens after the decision as the scorer logged it, whatever the delay.
    v.decided_at = max(v.decided_at, clock())
    shown = [(a["action"], a["params"]) for a in out["decision"]["actions"]]
    end = ending(v, shown, seed)
    if end.events:
        channel.send(end.events)
    first = out["decision"]["actions"][0]
    decision = {
        "variant": out["decision"]["variant"],
        "action": first["action"],
        "params": first["params"],
    }
    return truth_row(v, decision, end), bool(out["degraded"])


def read_truth(paths: Iterable[Path]) -> pa.Table:
    """The truth tables of one or more runs, concatenated."""
    return pa.concat_tables([pq.read_table(p) for p in paths])
