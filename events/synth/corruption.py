"""Invalid rows and duplicates mixed into a log, each of a kind the contract rejects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from events.synth.config import GeneratorConfig

# --------------------------------------------------------------------------- bad rows


def _corrupt_future_ts(row: dict[str, Any], rng: np.random.Generator) -> None:
    ts = str(row["ts"])
    row["ts"] = "2099" + ts[4:].replace("-02-29T", "-02-28T")


def _corrupt_oversized_element(row: dict[str, Any], rng: np.random.Generator) -> None:
    path = f"div.product-grid > div.product-card:nth-child({int(rng.integers(1, 99))}) > "
    row["element_id"] = (path * 20)[:499] + "a"


def _corrupt_oversized_event_id(row: dict[str, Any], rng: np.random.Generator) -> None:
    row["event_id"] = (str(row["event_id"]) * 13)[:200]


def _pop(name: str) -> Callable[[dict[str, Any], np.random.Generator], None]:
    def corrupt(row: dict[str, Any], rng: np.random.Generator) -> None:
        row.pop(name, None)

    return corrupt


def _put(name: str, value: Any) -> Callable[[dict[str, Any], np.random.Generator], None]:
    def corrupt(row: dict[str, Any], rng: np.random.Generator) -> None:
        row[name] = value

    return corrupt


def _put_drawn(
    name: str, draw: Callable[[np.random.Generator], Any]
) -> Callable[[dict[str, Any], np.random.Generator], None]:
    def corrupt(row: dict[str, Any], rng: np.random.Generator) -> None:
        row[name] = draw(rng)

    return corrupt


@dataclass(frozen=True)
class BadKind:
    """One kind of invalid row, and the rejection reason the contract gives it.

    ``parquet`` tells whether Parquet's typed columns can hold the row; the others go
    into the ``.badtypes.jsonl`` sidecar of a Parquet day.
    """

    name: str
    reason: str
    parquet: bool
    corrupt: Callable[[dict[str, Any], np.random.Generator], None]


#: Every kind of invalid row mixed in by :func:`write_event_log`.
BAD_KINDS: tuple[BadKind, ...] = (
    BadKind("missing_session_id", "session_id: missing required field", True, _pop("session_id")),
    BadKind("missing_ts", "ts: missing required field", True, _pop("ts")),
    BadKind(
        "empty_session_id",
        "session_id: must be 1 to 64 printable ASCII characters without spaces",
        True,
        _put("session_id", ""),
    ),
    BadKind(
        "wrong_type_user_id",
        "user_id: expected a string, got int",
        False,
        _put_drawn("user_id", lambda rng: int(rng.integers(10_000, 99_999))),
    ),
    BadKind(
        "unparsable_ts",
        "ts: not an ISO 8601 time",
        False,
        _put_drawn("ts", lambda rng: str(rng.choice(["yesterday", "2026-13-45T25:61:00Z", "n/a"]))),
    ),
    BadKind("future_ts", "ts: more than 5 minutes in the future", True, _corrupt_future_ts),
    BadKind(
        "unknown_event_type",
        "event_type: unknown event type",
        True,
        _put_drawn("event_type", lambda rng: str(rng.choice(["teleport", "rage_click", "pinch"]))),
    ),
    BadKind(
        "oversized_element_id", "element_id: string too long", True, _corrupt_oversized_element
    ),
    BadKind("oversized_event_id", "event_id: string too long", True, _corrupt_oversized_event_id),
    BadKind(
        "wrong_type_duration",
        "duration_ms: expected a number, got str",
        False,
        _put_drawn("duration_ms", lambda rng: str(rng.choice(["slow", "850ms", "NaN?"]))),
    ),
    BadKind(
        "negative_duration",
        "duration_ms: must not be negative",
        True,
        _put_drawn("duration_ms", lambda rng: -float(rng.integers(1, 5000))),
    ),
    BadKind(
        "scroll_depth_out_of_range",
        "scroll_depth: outside [0, 1]",
        True,
        _put_drawn("scroll_depth", lambda rng: round(1.0 + float(rng.uniform(0.01, 2.0)), 3)),
    ),
    BadKind(
        "wrong_type_consent",
        "consent: expected true or false, got str",
        False,
        _put("consent", "yes"),
    ),
)


@dataclass
class _Extras:
    """Rows mixed into the day files: duplicates (kind -1) and invalid rows."""

    src: np.ndarray  # index of the valid row it copies
    kind: np.ndarray  # -1 duplicate, else index into BAD_KINDS
    day: np.ndarray
    pos: np.ndarray  # insert before this row of the day's valid rows

    @property
    def bad(self) -> int:
        return int((self.kind >= 0).sum())

    @property
    def duplicates(self) -> int:
        return int((self.kind < 0).sum())


def _plan_extras(cfg: GeneratorConfig, bounds: np.ndarray, rng: np.random.Generator) -> _Extras:
    n_events = int(bounds[-1])
    if cfg.bad_rate <= 0 or n_events == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _Extras(empty, empty, empty, empty)
    n_bad = max(len(BAD_KINDS), round(cfg.bad_rate * n_events))
    n_dup = min(n_events, max(1, round(cfg.bad_rate / 2 * n_events)))
    bad_src = rng.integers(0, n_events, n_bad)
    kind = rng.permutation(np.arange(n_bad) % len(BAD_KINDS))
    dup_src = np.sort(rng.choice(n_events, n_dup, replace=False))
    src = np.concatenate([dup_src, bad_src])
    kind = np.concatenate([np.full(n_dup, -1), kind])
    day = np.searchsorted(bounds, src, side="right") - 1
    local = src - bounds[day]
    size = bounds[day + 1] - bounds[day]
    low = np.where(kind < 0, local + 1, 0)  # a resent copy comes after its original
    pos = rng.integers(low, size + 1)
    return _Extras(src, kind, day, pos)


def _merge_order(n_valid: int, pos: np.ndarray) -> np.ndarray:
    """Order of ``valid rows + extras`` with each extra inserted before row ``pos``."""
    keys = np.concatenate([np.arange(n_valid, dtype=np.float64), pos - 0.5])
    return np.argsort(keys, kind="stable")
