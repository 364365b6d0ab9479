"""Drift benchmark parts ``uci`` (real data) and ``cost`` (1M rows x 40 columns)."""

from __future__ import annotations

import time
from collections import Counter
from itertools import pairwise

import numpy as np
import pandas as pd

UCI_CALENDAR = ["special_day"]
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def uci_splits(month: pd.Series) -> dict[str, tuple[str, pd.Series, pd.Series]]:
    """Named (kind, reference rows, current rows) splits of the UCI sessions by month.

    * ``bar``: November-December against February-October (must be flagged);
    * ``same season``: random halves of the same months (a window and a
      reference from the same period; must not be flagged), 5 seeds each;
    * ``neighbours``: each pair of neighbouring months with data inside one of
      the bar's two seasons (February-October, November-December), and
      July-August against September-October (reported).
    """
    m = month
    out = {"Nov-Dec vs Feb-Oct": ("bar", m <= 10, m >= 11)}
    groups = {"Feb-Oct": m <= 10, "Nov-Dec": m >= 11, "Mar-May": m.isin([3, 4, 5])}
    groups["Jul-Oct"] = m.isin([7, 8, 9, 10])
    for name, rows in groups.items():
        for seed in range(5):
            half = pd.Series(np.random.default_rng(seed).random(len(m)) < 0.5, index=m.index)
            out[f"{name} halves, seed {seed}"] = ("same season", rows & half, rows & ~half)
    present = sorted(int(x) for x in m.unique())
    for a, b in pairwise(present):
        if (a <= 10) == (b <= 10):
            out[f"{MONTHS[a - 1]} vs {MONTHS[b - 1]}"] = ("neighbours", m == a, m == b)
    out["Jul-Aug vs Sep-Oct"] = ("neighbours", m.isin([7, 8]), m.isin([9, 10]))
    return out


def uci_part() -> None:
    from core.settings import DriftSettings
    from feature_repo.uci import UCI_FEATURES, UCI_LABEL, load_uci
    from monitoring import check

    t = load_uci().to_pandas()
    feats = [f.name for f in UCI_FEATURES if f.name != "month"]
    cats = [f.name for f in UCI_FEATURES if f.dtype == "int" and f.name != "month"]
    t = t.rename(columns={UCI_LABEL: "label"})
    print(
        f"uci: {len(t):,} sessions, {len(feats)} features ({len(cats)} categorical); "
        f"reported, not counted: {UCI_CALENDAR}"
    )
    setups = {
        "baseline: fixed 0.1, every feature votes": (
            DriftSettings(calibrate=False, group_corr=None),
            [],
        ),
        "calibrated, every feature votes": (DriftSettings(group_corr=None), []),
        "default: calibrated, groups vote, calendar reported only": (DriftSettings(), UCI_CALENDAR),
    }
    flagged: dict[tuple[str, str], list[str]] = {}
    for name, (kind, a, b) in uci_splits(t["month"]).items():
        print(f"  {name:<24} ref {a.sum():>5} cur {b.sum():>5} [{kind}]")
        for label, (cfg, trend) in setups.items():
            v = check(t[a], t[b], features=feats, categorical=cats, report_only=trend, cfg=cfg)
            d = v.check("data_drift")
            if d.status == "fail":
                flagged.setdefault((kind, label), []).append(name)
            print(f"      {label}: {d.status} ({d.detail[:240]})")
    print("  flagged (fail):")
    kinds = Counter(k for k, *_ in uci_splits(t["month"]).values())
    for kind, total in kinds.items():
        for label in setups:
            names = flagged.get((kind, label), [])
            shown = "" if kind == "same season" else f" {names}"
            print(f"    {kind:<12} {label}: {len(names)} / {total}{shown}")


def synthetic(rows: int, cols: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0.0, 1.0, size=(rows, cols))
    x[:, :4] *= 1.0 + shift
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(cols)])
    frame["risk"] = 1 / (1 + np.exp(-np.log(x[:, 0])))
    return frame


def cost_part() -> None:
    from core.settings import DriftSettings
    from monitoring import check

    cols = [f"f{i:02d}" for i in range(40)]
    big_ref, big_cur = synthetic(1_000_000, 40, 0, 0.0), synthetic(1_000_000, 40, 1, 0.3)
    t = time.perf_counter()
    v = check(big_ref, big_cur, features=cols)
    print(
        f"cost: 1M x 40 columns per side, default sampling (20,000 rows a side): "
        f"{time.perf_counter() - t:.1f} s (bar <= 30 s); data_drift {v.check('data_drift').status}"
    )
    ref, cur = big_ref.head(100_000), big_cur.head(100_000)
    print("  rows per side  seconds  data_drift  drifted features (max |score - full|)")
    full = None
    for n in (None, 2_000, 5_000, 10_000, 20_000, 50_000):
        t = time.perf_counter()
        v = check(ref, cur, features=cols, cfg=DriftSettings(sample_rows=n))
        dt = time.perf_counter() - t
        if full is None:
            full = v
        gap = max(abs(a.score - b.score) for a, b in zip(full.features, v.features, strict=True))
        same = [c.status for c in v.checks] == [c.status for c in full.checks] and {
            d.name for d in v.drifted
        } == {d.name for d in full.drifted}
        print(
            f"  {n or 100_000:>13,}  {dt:>7.1f}  {v.check('data_drift').status:<10}  "
            f"{len(v.drifted)} ({gap:.4f}){'' if same else '  DISAGREES with full'}"
        )
