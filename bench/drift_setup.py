"""What the drift benchmarks share: the generated log, its 48-hour windows and the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from pipeline import built_store, fresh_home

DAYS, DRIFT_DAY, REF_DAYS, WINDOW_H = 88, 48, 7, 48
#: Sessions per generated day, as in the first 42-day bench (20,000 sessions).
SESSIONS_PER_DAY = 20_000 / 42


def decision_frame(
    sessions: int, seed: int, kind: str, cache: Path | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Labelled decision points with features, through the real feature pipeline and Feast.

    With ``cache``, the frame is kept as parquet (keyed by its arguments) and reused.
    """
    path = cache / f"frame-{sessions}-{DAYS}-{DRIFT_DAY}-{seed}-{kind}.parquet" if cache else None
    if path is not None and path.exists():
        frame = pd.read_parquet(path)
        return frame, json.loads(path.with_suffix(".json").read_text())
    home = fresh_home("drift2-bench-")
    from events.synth import GeneratorConfig
    from models.dataset import service_columns, training_frame
    from models.train import SERVICE

    cfg = GeneratorConfig(
        sessions=sessions,
        days=DAYS,
        seed=seed,
        drift_day=DRIFT_DAY,
        drift_kind=kind,  # type: ignore[arg-type]
    )
    s, store = built_store(home, cfg)
    frame, cols = training_frame(s, store), service_columns(store, SERVICE).columns
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path)
        path.with_suffix(".json").write_text(json.dumps(cols))
    return frame, cols


def side(h: int) -> str | None:
    """Which side of the drift day the window from hour ``h`` is on.

    ``"before"`` only when it ends by the drift day, ``"after"`` only when it
    starts on or after it; a window across the drift day is on neither side.

    >>> side(DRIFT_DAY * 24 - WINDOW_H), side(DRIFT_DAY * 24), side(DRIFT_DAY * 24 - 24)
    ('before', 'after', None)
    """
    k = DRIFT_DAY * 24
    return "before" if h + WINDOW_H <= k else "after" if h >= k else None


def window_starts() -> list[int]:
    """First hours of the full windows between the reference and the log's end.

    Laid from the drift day in both directions, so no window straddles it:
    20 before it and 20 after it with 88 days, drift day 48 and 48 h windows.
    """
    k, lo, hi = DRIFT_DAY * 24, REF_DAYS * 24, DAYS * 24
    before = range(k - WINDOW_H, lo - 1, -WINDOW_H)
    after = range(k, hi - WINDOW_H + 1, WINDOW_H)
    return [*sorted(before), *after]


def windows(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[int, pd.DataFrame]], Any]:
    """Reference rows, then (first hour, rows) of every window of :func:`window_starts`."""
    t = frame["event_timestamp"]
    start = t.min().floor("D")
    hours = ((t - start).dt.total_seconds() // 3600).astype(int)
    ref = frame[hours < REF_DAYS * 24]
    out = []
    for h in window_starts():
        part = frame[(hours >= h) & (hours < h + WINDOW_H)]
        if len(part):
            out.append((h, part))
    return ref, out, start


def fit(ref: pd.DataFrame, cols: list[str]) -> Any:
    from models.card import ModelCard
    from models.lgbm import train_lgbm

    cut = ref["event_timestamp"].quantile(0.8)
    tr, va = ref[ref["event_timestamp"] < cut], ref[ref["event_timestamp"] >= cut]
    model = train_lgbm(
        tr[cols].to_numpy(float),
        tr["label"].to_numpy(int),
        va[cols].to_numpy(float),
        va["label"].to_numpy(int),
        ModelCard("lightgbm", "abandonment_v1", cols, {}),
        seed=0,
        groups=tr["session_id"].to_numpy(),
        valid_groups=va["session_id"].to_numpy(),
        # The concept part scores this model on the last fifth of the reference
        # for its performance baseline: it must not have learnt those rows.
        refit=False,
    ).model
    return model


def true_drift(
    before: pd.DataFrame, after: pd.DataFrame, cols: list[str], cats: list[str]
) -> set[str]:
    """Features whose distribution moved: distance >= 0.1 between all rows before and after."""
    from monitoring.calibration import distance, finite

    return {
        c
        for c in cols
        if len(finite(before[c]))
        and len(finite(after[c]))
        and distance(finite(before[c]), finite(after[c]), c in cats) >= 0.1
    }


def holdout_auc(ref: pd.DataFrame, cols: list[str], model: Any) -> float:
    """The model's ROC AUC on the last 20 % of the reference (its validation part)."""
    from models.metrics import roc_auc

    va = ref[ref["event_timestamp"] >= ref["event_timestamp"].quantile(0.8)]
    return roc_auc(va["label"].to_numpy(int), model.predict(va[cols].to_numpy(float)))


#: Labelled sessions the performance check is tried at, in order.
