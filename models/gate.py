"""The promotion gate: a challenger becomes champion only if every check passes.

Checks, all on the same recent hold-out window:

* ``auc``: challenger ROC AUC >= champion ROC AUC - ``auc_tolerance``; the very
  first model must instead beat the trivial baseline (AUC >= ``min_first_auc``
  and a lower log loss than predicting the base rate);
* ``calibration``: expected calibration error <= ``max_ece``;
* ``invariance``: shuffling a field the outcome does not depend on
  (``hour_of_day``) moves predictions by at most ``max_invariance_shift``;
* ``direction``: more hesitation (longer hovers, slower scrolls, a higher
  hesitation score, more size-guide opens and price hovers) does not lower the
  predicted risk on average;
* ``minimum_cases``: a hesitant session scores above a decisive one;
* ``latency``: a single-row prediction takes at most ``latency_budget_us``;
* ``drift``: what the latest drift verdict says of the data the challenger
  was trained on (:func:`drift_quality`): broken data (missing values, unknown
  categories) refuses it; drifted data lets it through only when it beats the
  champion's ROC AUC on the hold-out (which is then drifted data too), so a
  retrained model replaces a champion the drift has left behind, and a model
  no better than the champion waits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.settings import GateSettings
from models.metrics import expected_calibration_error, log_loss, roc_auc


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class GateDecision:
    promote: bool
    checks: list[Check] = field(default_factory=list)
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "checks": [asdict(c) for c in self.checks],
            "challenger": self.challenger,
            "champion": self.champion,
        }

    def markdown(self, name: str, version: str) -> str:
        verdict = "PROMOTED" if self.promote else "REFUSED"
        rows = "\n".join(
            f"| {c.name} | {'pass' if c.passed else '**fail**'} | {c.detail} |" for c in self.checks
        )
        head = "| check | result | detail |\n|---|---|---|"
        return f"# {name} v{version}: {verdict}\n\n{head}\n{rows}\n"


def _col(columns: list[str], name: str) -> int | None:
    return columns.index(name) if name in columns else None


#: How a more hesitant visitor looks: (feature, operation, amount).
HESITATION: tuple[tuple[str, str, float], ...] = (
    ("hover_ms_mean", "mul", 1.5),
    ("hover_ms_ewm", "mul", 1.5),
    ("scroll_velocity_mean", "mul", 0.7),
    ("scroll_velocity_ewm", "mul", 0.7),
    # Hovers 1.5 times longer and scrolls at 0.7 times the speed move the pooled
    # score by about log(1.5) / 0.76 = 0.53 and -log(0.7) / 0.61 = 0.58.
    ("hesitation_score", "add", 0.5),
    ("size_guide_opens", "add", 1.0),
    ("price_hover_count", "add", 2.0),
)


def hesitate(x: np.ndarray, columns: list[str], strength: float = 1.0) -> np.ndarray:
    """``x`` with every hesitation signal moved ``strength`` steps towards hesitation."""
    out = x.copy()
    for name, op, amount in HESITATION:
        i = _col(columns, name)
        if i is None:
            continue
        col = np.nan_to_num(out[:, i])
        out[:, i] = col * amount**strength if op == "mul" else col + amount * strength
    return out


def behavioural_checks(
    predict: Callable[[np.ndarray], np.ndarray],
    columns: list[str],
    x: np.ndarray,
    cfg: GateSettings,
    seed: int = 0,
) -> list[Check]:
    """Invariance, direction and minimum-functionality checks on hold-out rows."""
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), size=min(len(x), 2000), replace=False)]
    base = predict(sample)
    checks = []
    hour = _col(columns, "hour_of_day")
    if hour is not None:
        shuffled = sample.copy()
        shuffled[:, hour] = rng.permutation(shuffled[:, hour])
        shift = float(np.mean(np.abs(predict(shuffled) - base)))
        checks.append(
            Check(
                "invariance",
                shift <= cfg.max_invariance_shift,
                f"mean |Δrisk| {shift:.4f} when shuffling hour_of_day "
                f"(max {cfg.max_invariance_shift})",
            )
        )
    delta = float(np.mean(predict(hesitate(sample, columns)) - base))
    checks.append(
        Check(
            "direction",
            delta >= -cfg.direction_tolerance,
            f"mean Δrisk {delta:+.4f} with longer hovers, slower scrolls, a higher "
            "hesitation score, more size-guide opens and price hovers",
        )
    )
    median = np.nan_to_num(np.nanmedian(sample, axis=0)).reshape(1, -1)
    decisive, wavering = hesitate(median, columns, -2.0), hesitate(median, columns, 2.0)
    p = predict(np.vstack([decisive, wavering]))
    checks.append(
        Check("minimum_cases", bool(p[1] > p[0]), f"hesitant {p[1]:.3f} vs decisive {p[0]:.3f}")
    )
    return checks


def decide(
    challenger: Any,
    champion: Any | None,
    x: np.ndarray,
    y: np.ndarray,
    cfg: GateSettings,
    *,
    latency_us: float,
    drift_verdict: tuple[str, str],
) -> GateDecision:
    """Run every check; ``champion`` is None for the first model."""
    p = challenger.predict(x)
    mine = {
        "roc_auc": roc_auc(y, p),
        "ece": expected_calibration_error(y, p),
        "log_loss": log_loss(y, p),
        "latency_us": latency_us,
        "rows": float(len(y)),
    }
    decision = GateDecision(promote=False, challenger=mine)
    checks = decision.checks
    if champion is None:
        base = log_loss(y, np.full(len(y), y.mean()))
        ok = mine["roc_auc"] >= cfg.min_first_auc and mine["log_loss"] < base
        checks.append(
            Check(
                "auc",
                ok,
                f"first model: AUC {mine['roc_auc']:.4f} "
                f"(min {cfg.min_first_auc}), log loss {mine['log_loss']:.4f} vs "
                f"base rate {base:.4f}",
            )
        )
    else:
        theirs = champion.predict(x)
        decision.champion = {
            "roc_auc": roc_auc(y, theirs),
            "ece": expected_calibration_error(y, theirs),
        }
        floor = decision.champion["roc_auc"] - cfg.auc_tolerance
        checks.append(
            Check(
                "auc",
                mine["roc_auc"] >= floor,
                f"AUC {mine['roc_auc']:.4f} vs champion "
                f"{decision.champion['roc_auc']:.4f} (tolerance {cfg.auc_tolerance})",
            )
        )
    checks.append(
        Check(
            "calibration", mine["ece"] <= cfg.max_ece, f"ECE {mine['ece']:.4f} (max {cfg.max_ece})"
        )
    )
    checks += behavioural_checks(challenger.predict, challenger.card.columns, x, cfg)
    checks.append(
        Check(
            "latency",
            latency_us <= cfg.latency_budget_us,
            f"single-row predict {latency_us:.0f} µs (budget {cfg.latency_budget_us:.0f})",
        )
    )
    checks.append(_drift_check(drift_verdict, mine, decision.champion))
    decision.promote = all(c.passed for c in checks)
    return decision


def _drift_check(
    verdict: tuple[str, str], mine: dict[str, float], champion: dict[str, float]
) -> Check:
    status, detail = verdict
    if status == "fail":
        return Check("drift", False, detail)
    if status == "drifted" and champion:
        beats = mine["roc_auc"] > champion["roc_auc"]
        return Check(
            "drift",
            beats,
            f"{detail}; after a drift a challenger must beat the champion: AUC "
            f"{mine['roc_auc']:.4f} vs {champion['roc_auc']:.4f} on the hold-out",
        )
    return Check("drift", True, detail)


def _overlaps(a: list[str], b: list[str]) -> bool:
    return bool(a and b and all(a) and all(b) and a[0] <= b[1] and b[0] <= a[1])


def _span(window: dict[str, Any]) -> list[str]:
    """First and last time of a model card's training window (train to test)."""
    times = sorted(t for part in window.values() if isinstance(part, list) for t in part if t)
    return [times[0], times[-1]] if times else []


def drift_quality(
    verdict: Mapping[str, Any] | None, training_window: dict[str, Any] | None = None
) -> tuple[str, str]:
    """What a drift verdict (the newest one, as a mapping) says about a challenger's data.

    Returns ``(status, reason)``; the verdict applies when its current window
    overlaps the challenger's ``training_window`` (always, when none is given):

    * ``"fail"``: broken data. The ``data_quality`` check failed on missing
      values or unknown categories (or a verdict too old to say which); a model
      trained on it is refused.
    * ``"drifted"``: the verdict failed, on drift (data or prediction drift,
      values out of the reference range, performance, the online detector),
      not on broken data. A challenger passes only by beating the champion.
    * ``"pass"``: otherwise, or when no check has run yet (``verdict`` None).

    >>> drift_quality(None)[0]
    'pass'
    >>> quality = {"name": "data_quality", "status": "fail", "detail": "x: 40% missing",
    ...            "values": {"missing_failed": 1.0, "range_failed": 0.0, "category_failed": 0.0}}
    >>> verdict = {"status": "fail", "windows": {"current": ["2026-06-03", "2026-06-04"]},
    ...            "checks": [quality]}
    >>> drift_quality(verdict, {"train": ["2026-06-01", "2026-06-03T12:00"]})
    ('fail', 'data quality failed on 2026-06-03..2026-06-04: x: 40% missing')
    >>> drift_quality(verdict, {"train": ["2026-05-01", "2026-05-20"]})[0]
    'pass'
    >>> quality.update(detail="x: 9% outside the reference range",
    ...                values={"missing_failed": 0.0, "range_failed": 1.0, "category_failed": 0.0})
    >>> drift_quality(verdict)
    ('drifted', 'data drifted on 2026-06-03..2026-06-04 (failed: data_quality)')
    """
    if verdict is None:
        return "pass", "no drift check has run yet"
    current = list((verdict.get("windows") or {}).get("current") or [])
    span = _span(training_window) if training_window else []
    if training_window is not None and current and not _overlaps(span, current):
        return "pass", f"the latest verdict covers {current[0]}..{current[1]}, not this data"
    where = f" on {current[0][:19]}..{current[1][:19]}" if current else ""
    checks = list(verdict.get("checks", []))
    quality = next((c for c in checks if c.get("name") == "data_quality"), None)
    if quality is not None and quality.get("status") == "fail":
        values = quality.get("values") or {}
        kinds = ("missing_failed", "range_failed", "category_failed")
        broken = not all(k in values for k in kinds) or (
            values["missing_failed"] + values["category_failed"] > 0
        )
        if broken:
            return "fail", f"data quality failed{where}: {quality.get('detail', '')}"
    failed = [str(c.get("name")) for c in checks if c.get("status") == "fail"]
    if failed:
        return "drifted", f"data drifted{where} (failed: {', '.join(failed)})"
    return "pass", f"latest verdict {verdict.get('status')}{where}"


@dataclass
class PromotionReport:
    """What one run of the gate decided, per model family."""

    decisions: dict[str, GateDecision]
    promoted: dict[str, str]
    challengers: dict[str, str] = field(default_factory=dict)
