"""The uplift model trained from the decision log, measured, and valued off-policy.

:func:`train_uplift` reads the sessions of a window (each session's first
decision, the features it was made on, and what the session paid after it),
and returns:

* the **model** (:class:`models.uplift.UpliftModel`), fitted on every session;
* its **Qini curves and AUUC** per treatment against ``none``, on
  cross-fitted predictions weighted by inverse propensities;
* the **value of the uplift policy** (each session's best treatment by
  cross-fitted predictions) next to ``none`` and the logged mix: doubly
  robust and IPS with 95% intervals, from the same log as the policy
  evaluation (:mod:`experiments.policy_eval`), and the true values when a
  simulator's truth is known.

The context is the risk, the device and every feature the scorer logged with
the decision. Sessions without consent are left out (no order value is kept
for them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from core.errors import NotReadyError
from core.settings import Settings
from experiments.load import default_since, load_joined, read_truth
from experiments.ope import doubly_robust, ips
from experiments.policy_eval import (
    LOGGED,
    PolicyValue,
    logged_policies,
    true_net_revenue,
    true_value_of,
    truth_for,
)
from models.uplift import (
    NONE,
    UpliftModel,
    auuc,
    best_treatment,
    cross_fitted,
    fit_uplift,
    percent_of,
    qini_curve,
)

UPLIFT_POLICY = "uplift"
_DEVICES = ("mobile", "tablet")


@dataclass
class UpliftReport:
    """What :func:`train_uplift` found; ``as_dict`` is the ``--json`` shape."""

    model: UpliftModel
    sessions: int
    window: dict[str, str]
    qini: dict[str, tuple[np.ndarray, np.ndarray]]  # treatment -> (fraction, gain)
    auuc: dict[str, float]
    values: list[PolicyValue]
    true_uplift_corr: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "window": self.window,
            "treatments": self.model.treatments,
            "sessions_per_treatment": self.model.card.params["sessions"],
            "auuc": self.auuc,
            "true_uplift_correlation": self.true_uplift_corr,
            "policies": [v.as_dict() for v in self.values],
            "columns": self.model.card.columns,
        }

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow (:func:`metric_name`)."""
        out = {metric_name("auuc", k): v for k, v in self.auuc.items()}
        for v in self.values:
            out[f"dr_value_{v.name}"] = v.dr.value
            if v.true_value is not None:
                out[f"true_value_{v.name}"] = v.true_value
        return out


def metric_name(prefix: str, key: str) -> str:
    """An MLflow metric name for a treatment key (MLflow refuses ``@`` and ``+``).

    >>> metric_name("auuc", "show_discount_popup@15")
    'auuc_show_discount_popup_15'
    """
    return f"{prefix}_{key}".replace("@", "_").replace("+", "_and_")


def context(t: pa.Table) -> tuple[np.ndarray, list[str]]:
    """The model's input: risk, device flags and the logged features, in a fixed order."""
    features = sorted(c for c in t.column_names if c.startswith("feature:"))
    columns = ["risk", *(f"is_{d}" for d in _DEVICES), *features]
    device = np.asarray(t.column("device").fill_null("").to_pylist(), dtype=object)
    cols = [np.asarray(t.column("risk").fill_null(np.nan), dtype=float)]
    cols += [(device == d).astype(float) for d in _DEVICES]
    cols += [np.asarray(t.column(c).fill_null(np.nan), dtype=float) for c in features]
    return np.column_stack(cols), columns


def cart_values(t: pa.Table) -> np.ndarray:
    """The cart's value when the decision was made (0 when unknown)."""
    if "feature:cart_value" not in t.column_names:
        return np.zeros(t.num_rows)
    return np.nan_to_num(np.asarray(t.column("feature:cart_value").fill_null(0.0), dtype=float))


def train_uplift(
    joined: pa.Table,
    truth: pa.Table | None = None,
    *,
    window: dict[str, str] | None = None,
    seed: int = 0,
) -> UpliftReport:
    """Fit, measure and value the uplift model on ``joined`` (``load_joined(features=True)``)."""
    log = logged_policies(joined, truth, seed=seed)
    t = log.table
    x, columns = context(t)
    treatment = t.column("treatment").to_pylist()
    mu = np.asarray(t.column("treatment_propensity"), dtype=float)
    bought = np.asarray(t.column("purchased").fill_null(False), dtype=float)
    cart = cart_values(t)
    keys, p = cross_fitted(x, treatment, mu, bought, columns=columns, seed=seed)
    keep = np.array([1.0 - percent_of(k) / 100.0 for k in keys])
    value = p * cart[:, None] * keep
    # The uplift policy, each session's choice made by a model that did not see it.
    choice = best_treatment(value, keys)
    target = np.zeros((t.num_rows, len(log.keys)))
    target[np.arange(t.num_rows), [log.keys.index(keys[c]) for c in choice]] = 1.0
    uplift = PolicyValue(
        UPLIFT_POLICY,
        dr=doubly_robust(target, log.action, log.mu, log.reward, log.q),
        ips=ips(target, log.action, log.mu, log.reward),
    )
    values = [
        PolicyValue(
            name,
            dr=doubly_robust(log.candidates[name], log.action, log.mu, log.reward, log.q),
            ips=ips(log.candidates[name], log.action, log.mu, log.reward),
        )
        for name in (NONE, LOGGED)
    ] + [uplift]
    truth_rows = truth_for(t, truth)
    if truth_rows is not None:
        values[0].true_value = true_value_of(truth_rows, log.candidates[NONE], log.keys)
        values[1].true_value = true_value_of(truth_rows, log.candidates[LOGGED], log.keys)
        uplift.true_value = true_value_of(truth_rows, target, log.keys)
    qini, areas, corr = {}, {}, {}
    reward = np.asarray(t.column("revenue").fill_null(0.0), dtype=float)
    given = np.asarray(treatment, dtype=object)
    j0 = keys.index(NONE)
    for j, key in enumerate(keys):
        if key == NONE:
            continue
        rows = (given == key) | (given == NONE)
        score = value[rows, j] - value[rows, j0]
        curve = qini_curve(score, given[rows] == key, reward[rows], 1.0 / mu[rows])
        qini[key], areas[key] = curve, auuc(*curve)
        if truth_rows is not None:
            true_gain = true_net_revenue(truth_rows, key) - true_net_revenue(truth_rows, NONE)
            corr[key] = float(np.corrcoef(value[:, j] - value[:, j0], true_gain)[0, 1])
    model = fit_uplift(x, treatment, mu, bought, columns=columns, window=window or {}, seed=seed)
    return UpliftReport(model, t.num_rows, window or {}, qini, areas, values, corr)


def train_uplift_home(
    settings: Settings,
    *,
    since: datetime | None = None,
    truth: Path | None = None,
    seed: int = 0,
) -> UpliftReport:
    """:func:`train_uplift` on every decision of the home from ``since`` (30 days ago)."""
    now = datetime.now(UTC)
    start = since or default_since(now)
    joined = load_joined(settings, start, now, features=True)
    if joined.num_rows < 100:
        raise NotReadyError(
            f"{joined.num_rows} sessions decided since {start:%Y-%m-%d %H:%M}: the uplift "
            "model needs at least 100 (serve or simulate more traffic, or widen --since)"
        )
    window = {"start": start.isoformat(), "end": now.isoformat()}
    truth_table = read_truth(truth or settings.paths.home / "simulation")
    return train_uplift(joined, truth_table, window=window, seed=seed)
