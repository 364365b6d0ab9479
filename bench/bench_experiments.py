"""Experiment analysis checked against the simulated world's truth, each figure beside its goal.

    python bench/bench_experiments.py [--part coverage|aa|power|cuped|bands|speed|all]
                                      [--seed 5] [--rows 10000000]

The world (``events.synth``) gives every cart visitor a true purchase
probability without an adjustment and with each action
(``events.synth.effects``); the draws below are Bernoulli on those, exactly as
the simulator draws a visitor's ending. Figures:

* coverage: 300 experiments of 4,000 visitors drawn from a pool of world
  visitors, half shown a 15% discount, the other half nothing; how often the
  95% interval of the lift covers the true lift (the pool's mean effect).
  Goal 93-97%.
* aa: 1,000 A/A experiments, 14 days of 360 visitors a day (the demo's 5,000
  visitors spread over two weeks), looked at every day. False-positive rate of
  the always-valid interval (goal <= 5%) against the naive fixed-horizon test
  read every day (the baseline: how far above 5% it goes).
* power: the smallest true lift detected with 80% power at the demo's traffic
  (5,000 visitors; its 10/45/45 split and a 50/50 split), one look at the end,
  fixed-horizon and always-valid side by side.
* cuped: the interval width with the risk at decision time as covariate
  against the unadjusted width, on the same data: the oracle's risk (a bound)
  and a model-like risk (the oracle's log-odds plus noise, AUC about 0.78 like
  the demo's LightGBM).
* bands: per risk decile, the estimated lift against the true per-band lift
  (mean absolute error), on one experiment of the whole pool.
* speed: one analysis of ``--rows`` joined decision-outcome rows read from
  Parquet, report rendering excluded (goal <= 10 s).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from events.synth import GeneratorConfig
from events.synth.effects import DISCOUNT, effect_logit, purchase_probability
from experiments.analysis import analyze
from experiments.join import OUTCOME_SCHEMA
from experiments.stats import cuped, proportion_lift, sequential_halfwidth
from simulation.visitors import visitors

PLANNED = 5_000


def pool(seed: int, sessions: int = 60_000) -> dict[str, np.ndarray]:
    """World cart visitors: latents, the oracle risk, purchase probabilities (none, discount)."""
    people = visitors(GeneratorConfig(sessions=sessions, days=1, seed=seed))
    z = np.array([v.intent for v in people])
    h = np.array([v.hesitation for v in people])
    s = np.array([v.size_share for v in people])
    base = np.array([v.base_logit for v in people])
    effect = effect_logit(DISCOUNT, {"percent": 15}, z, h, s)
    return {
        "base": base,
        "risk": 1 / (1 + np.exp(-base)),
        "p0": purchase_probability(base, np.zeros_like(base)),
        "p1": purchase_probability(base, effect),
    }


def coverage(world: dict[str, np.ndarray], rng: np.random.Generator, runs: int = 300) -> None:
    truth = float(np.mean(world["p1"] - world["p0"]))
    covered = 0
    for _ in range(runs):
        idx = rng.choice(len(world["p0"]), 4_000, replace=False)
        treated = rng.random(len(idx)) < 0.5
        p = np.where(treated, world["p1"][idx], world["p0"][idx])
        buy = rng.random(len(idx)) < p
        d = proportion_lift(
            int(buy[treated].sum()),
            int(treated.sum()),
            int(buy[~treated].sum()),
            int((~treated).sum()),
        )
        covered += d.ci_low <= truth <= d.ci_high
    print(
        f"coverage: {covered / runs:.1%} of {runs} intervals cover the true lift "
        f"{truth:+.4f} (goal 93-97%)"
    )


def aa(rng: np.random.Generator, runs: int = 1_000, days: int = 14, per_day: int = 360) -> None:
    rate = 0.31
    naive = seq = 0
    for _ in range(runs):
        n = rng.binomial(per_day, 0.5, days)
        xa = rng.binomial(n, rate).cumsum()
        xb = rng.binomial(per_day - n, rate).cumsum()
        na, nb = n.cumsum(), (per_day - n).cumsum()
        fired_naive = fired_seq = False
        for d in range(days):
            lift = proportion_lift(int(xa[d]), int(na[d]), int(xb[d]), int(nb[d]))
            fired_naive |= lift.p_value < 0.05
            half = sequential_halfwidth(lift.se, int(na[d] + nb[d]), PLANNED)
            fired_seq |= abs(lift.lift) > half
        naive += fired_naive
        seq += fired_seq
    print(
        f"A/A, {days} daily looks, {runs} runs: always-valid {seq / runs:.1%} false positives "
        f"(goal <= 5%); baseline fixed-horizon test read daily {naive / runs:.1%}"
    )


def power(rng: np.random.Generator, reps: int = 400) -> None:
    rate, total = 0.31, 5_000
    for split in ((0.10, 0.45), (0.5, 0.5)):
        n_c, n_t = int(total * split[0]), int(total * split[1])
        found: dict[str, float | None] = {"fixed": None, "always-valid": None}
        for lift in np.arange(0.005, 0.20, 0.005):
            xc = rng.binomial(n_c, rate, reps)
            xt = rng.binomial(n_t, rate + lift, reps)
            hits = {"fixed": 0, "always-valid": 0}
            for a, b in zip(xt, xc, strict=True):
                d = proportion_lift(int(a), n_t, int(b), n_c)
                hits["fixed"] += d.ci_low > 0
                hits["always-valid"] += d.lift - sequential_halfwidth(d.se, n_t + n_c, PLANNED) > 0
            for k, v in hits.items():
                if found[k] is None and v / reps >= 0.8:
                    found[k] = float(lift)
            if all(v is not None for v in found.values()):
                break
        print(
            f"power 80% at {n_c:,} control / {n_t:,} treated: smallest lift fixed-horizon "
            f"{found['fixed']:+.3f}, always-valid {found['always-valid']:+.3f} "
            f"(base rate {rate})"
        )


def cuped_part(world: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    n = len(world["p0"])
    treated = rng.random(n) < 0.5
    buy = rng.random(n) < np.where(treated, world["p1"], world["p0"])
    noisy = world["base"] + rng.normal(0, 0.9, n)
    from sklearn.metrics import roc_auc_score

    for name, cov in (
        ("oracle risk", world["risk"]),
        ("model-like risk", 1 / (1 + np.exp(-noisy))),
    ):
        a = cuped(buy.astype(float), treated, cov)
        auc = roc_auc_score(~buy, cov)
        print(
            f"CUPED with the {name} (AUC {auc:.3f}): interval {a.width_ratio:.3f}x the "
            f"unadjusted width ({1 - a.width_ratio:.1%} narrower), n = {n:,}"
        )


def bands(world: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    n = len(world["p0"])
    treated = rng.random(n) < 0.5
    p = np.where(treated, world["p1"], world["p0"])
    buy = rng.random(n) < p
    table = _joined(np.where(treated, "t", "control"), buy, world["risk"])
    truth = pa.table(
        {"session_id": table.column("session_id"), "p_purchase": p, "p_purchase_none": world["p0"]}
    )
    out = analyze(table, {"control": 0.5, "t": 0.5}, experiment="x", truth=truth)
    errors = [abs(b["lift"] - b["true_lift"]) for b in out.bands]
    widths = [b["ci_high"] - b["ci_low"] for b in out.bands]
    true = [b["true_lift"] for b in out.bands]
    print(
        f"per-band lift: mean absolute error {statistics.mean(errors):.4f} over "
        f"{len(errors)} deciles of {n // 10:,} visitors (mean 95% width "
        f"{statistics.mean(widths):.4f}); true per-band lifts "
        f"{min(true):+.4f}..{max(true):+.4f}"
    )


def _joined(variant: np.ndarray, buy: np.ndarray, risk: np.ndarray) -> pa.Table:
    n = len(variant)
    t0 = np.datetime64("2026-06-01T00:00:00", "us")
    stamps = t0 + (np.arange(n) * (14 * 86_400_000_000 // max(n, 1))).astype("timedelta64[us]")
    return pa.Table.from_pydict(
        {
            "session_id": pa.array(np.char.add("s", np.arange(n).astype(str))),
            "decided_at": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "experiment": pa.array(np.full(n, "x")),
            "variant": pa.array(variant),
            "propensity": np.full(n, 0.5),
            "policy_version": np.ones(n, dtype=np.int64),
            "risk": risk,
            "action": pa.array(np.where(variant == "control", "none", DISCOUNT)),
            "discount_percent": np.where(variant == "control", 0.0, 15.0),
            "device": pa.array(np.where(np.arange(n) % 3 == 0, "desktop", "mobile")),
            "purchased": buy,
            "revenue": np.where(buy, 40.0, 0.0),
            "exposed": variant != "control",
            "added_to_cart_after": np.zeros(n, dtype=bool),
            "time_to_purchase_s": np.where(buy, 60.0, np.nan),
            "consent": np.ones(n, dtype=bool),
            "treatment": pa.nulls(n, pa.string()),
            "treatment_propensity": pa.nulls(n, pa.float64()),
            "arm_policies": pa.nulls(n, pa.string()),
            "segment": pa.array(np.arange(n) % 6),
        },
        schema=OUTCOME_SCHEMA,
    )


def speed(rng: np.random.Generator, rows: int) -> None:
    variant = np.where(rng.random(rows) < 0.5, "control", "t")
    risk = rng.random(rows)
    buy = rng.random(rows) < 0.3 + 0.01 * (variant == "t")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "joined.parquet"
        pq.write_table(_joined(variant, buy, risk), path)
        del variant, risk, buy
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            table = pq.read_table(path)
            analyze(table, {"control": 0.5, "t": 0.5}, experiment="x")
            times.append(time.perf_counter() - t0)
    print(
        f"speed: one analysis of {rows:,} joined rows read from Parquet: median "
        f"{statistics.median(times):.2f} s of 3 (goal <= 10 s; report rendering excluded)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--part",
        default="all",
        choices=["coverage", "aa", "power", "cuped", "bands", "speed", "all"],
    )
    ap.add_argument("--seed", type=int, default=5, help="Seed of the world and of every draw.")
    ap.add_argument("--rows", type=int, default=10_000_000, help="Rows of the speed check.")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    parts = (
        ["coverage", "aa", "power", "cuped", "bands", "speed"]
        if args.part == "all"
        else [args.part]
    )
    world = pool(args.seed) if {"coverage", "cuped", "bands"} & set(parts) else {}
    if world:
        lift = np.mean(world["p1"] - world["p0"])
        print(
            f"world: {len(world['p0']):,} cart visitors (seed {args.seed}); base conversion "
            f"{world['p0'].mean():.4f}, true lift of a 15% discount {lift:+.4f}"
        )
    for part in parts:
        t0 = time.perf_counter()
        {
            "coverage": lambda: coverage(world, rng),
            "aa": lambda: aa(rng),
            "power": lambda: power(rng),
            "cuped": lambda: cuped_part(world, rng),
            "bands": lambda: bands(world, rng),
            "speed": lambda: speed(rng, args.rows),
        }[part]()
        print(f"  ({part}: {time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
