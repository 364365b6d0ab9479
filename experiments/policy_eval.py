"""Which policy would have earned most: every arm, and doing nothing, valued off-policy.

The unit is a session's first decision (its assignment), as in the experiment
analysis; its **reward** is the revenue the session paid after it (net of any
discount: revenue minus the margin given away). Sessions without consent are
left out (the store keeps no order value for them).

Candidates:

* ``none``: never adjust;
* every arm of the experiment, as if it served all the traffic: the scorer logs
  each arm's probability of each treatment for each visitor (``arm_policies``:
  1 for what a rule arm would have applied, the bandit's distribution for a
  learning arm), so an arm's choice is known on every logged decision, not
  only its own;
* ``logged``: the experiment as it ran (its value is the mean reward; the
  estimators must agree with it, a check of the propensities).

Each gets IPS and doubly robust estimates (:mod:`experiments.ope`) with 95%
intervals, and, when a simulator's truth is known, its **true value**: the
mean over the same sessions of the world's expected net revenue under the
candidate's treatment (:mod:`events.synth.effects`).

>>> import pyarrow as pa
>>> t = pa.table({"treatment": ["none", "show_discount_popup@10"] * 50,
...     "variant": ["control", "b"] * 50, "propensity": [0.5] * 100,
...     "treatment_propensity": [0.5] * 100, "revenue": [10.0, 30.0] * 50,
...     "arm_policies": ['{"control": {"none": 1}, "b": {"show_discount_popup@10": 1}}'] * 100,
...     "risk": [0.5] * 100, "device": ["mobile"] * 100, "consent": [True] * 100})
>>> [(p.name, round(p.ips.value, 1)) for p in evaluate_policies(t)]
[('none', 10.0), ('control', 10.0), ('b', 30.0), ('logged', 20.0)]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InputError, NotReadyError
from core.settings import Settings
from events.synth.effects import NONE, discount_percent, purchase_probability, shown_effect
from experiments.load import (
    arm_shares,
    default_since,
    experiments_in,
    latest_version,
    load_joined,
    read_truth,
)
from experiments.ope import Estimate, doubly_robust, dr_difference, fit_reward_model, ips
from models import policy_registry, registry
from models.policy_registry import is_canary

LOGGED = "logged"
#: While a challenger policy runs as a canary: the champion's arms, and the
#: challenger's, each valued as one policy (their arms mixed by their shares).
CHAMPION, CANARY = "champion", "canary"
_DEVICES = ("desktop", "mobile", "tablet")


@dataclass
class PolicyValue:
    """One candidate policy's estimated value (and true value, when the truth is known)."""

    name: str
    dr: Estimate
    ips: Estimate
    true_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` shape: DR is the ``value_estimate``; IPS beside it."""
        return {
            "name": self.name,
            "value_estimate": self.dr.value,
            "ci_low": self.dr.ci_low,
            "ci_high": self.dr.ci_high,
            "method": "doubly_robust",
            "ips": self.ips.as_dict(),
            "effective_sample_size": self.dr.ess,
            "n": self.dr.n,
            "true_value": self.true_value,
        }


def parse_treatment(key: str) -> list[tuple[str, dict[str, Any]]]:
    """A treatment key back to actions and parameters.

    >>> parse_treatment("show_discount_popup@15+emphasize_cta")
    [('show_discount_popup', {'percent': 15.0}), ('emphasize_cta', {})]
    >>> parse_treatment("none")
    []
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for part in key.split("+"):
        if not part or part == NONE:
            continue
        action, _, pct = part.partition("@")
        out.append((action, {"percent": float(pct)} if pct else {}))
    return out


def _usable(joined: pa.Table) -> pa.Table:
    ok = np.asarray(joined.column("treatment").is_valid())
    ok &= np.asarray(joined.column("arm_policies").is_valid())
    if "consent" in joined.column_names:
        ok &= np.asarray(joined.column("consent").fill_null(False))
    return joined.filter(pa.array(ok))


def _context(t: pa.Table) -> np.ndarray:
    risk = np.asarray(t.column("risk").fill_null(np.nan), dtype=float)
    device = np.asarray(t.column("device").fill_null("").to_pylist(), dtype=object)
    onehot = np.stack([device == d for d in _DEVICES], axis=1).astype(float)
    return np.column_stack([risk, onehot])


@dataclass
class LoggedPolicies:
    """A log ready for off-policy evaluation: every candidate's probabilities per decision."""

    table: pa.Table
    keys: list[str]  # treatment keys, the columns of every target
    action: np.ndarray  # the logged treatment's column
    mu: np.ndarray  # its probability over the whole experiment
    reward: np.ndarray
    q: np.ndarray  # the cross-fitted reward model, (decisions, keys)
    candidates: dict[str, np.ndarray]  # name -> (decisions, keys) probabilities


def logged_policies(
    joined: pa.Table, truth: pa.Table | None = None, *, seed: int = 0
) -> LoggedPolicies:
    """``none``, every arm and the logged mix as probabilities over the logged decisions.

    ``joined`` is the experiment's joined table (one experiment, one policy
    version), with a ``consent`` column when known. With a simulator's
    ``truth``, only the sessions it knows are kept (other traffic in the window
    is left out).
    """
    t = _usable(joined)
    if truth is not None:
        known = pc.is_in(t.column("session_id"), value_set=truth.column("session_id"))
        t = t.filter(known)
    if t.num_rows < 2:
        raise NotReadyError(
            "no decision in the window logs the treatments every arm would have applied: "
            "decisions from before treatments were logged cannot be evaluated off-policy"
        )
    logged = t.column("treatment").to_pylist()
    arms_of = [json.loads(a) for a in t.column("arm_policies").to_pylist()]
    arms = list(arms_of[0])
    keys = sorted({NONE, *logged, *(k for row in arms_of for d in row.values() for k in d)})
    col = {k: i for i, k in enumerate(keys)}
    n, width = len(logged), len(keys)
    action = np.array([col[k] for k in logged])
    reward = np.asarray(t.column("revenue").fill_null(0.0), dtype=float)

    def policy_of(arm: str) -> np.ndarray:
        target = np.zeros((n, width))
        for i, row in enumerate(arms_of):
            for key, p in (row.get(arm) or {NONE: 1.0}).items():
                target[i, col[key]] += p
        return target / target.sum(axis=1, keepdims=True)

    none = np.zeros((n, width))
    none[:, col[NONE]] = 1.0
    candidates = {NONE: none, **{arm: policy_of(arm) for arm in arms}}
    shares = _shares(t, arms)
    # The logging policy itself: the arms' shares.
    candidates[LOGGED] = sum((shares[a] * candidates[a] for a in arms), np.zeros((n, width)))
    if any(is_canary(a) for a in arms):  # a champion and its canary, each as a whole
        for name, members in (
            (CHAMPION, [a for a in arms if not is_canary(a)]),
            (CANARY, [a for a in arms if is_canary(a)]),
        ):
            total = sum(shares[a] for a in members) or 1.0
            candidates[name] = sum(
                (shares[a] / total * candidates[a] for a in members), np.zeros((n, width))
            )
    return LoggedPolicies(
        table=t,
        keys=keys,
        action=action,
        mu=np.asarray(t.column("treatment_propensity"), dtype=float),
        reward=reward,
        q=fit_reward_model(_context(t), action, reward, width, seed=seed),
        candidates=candidates,
    )


def evaluate_policies(
    joined: pa.Table, truth: pa.Table | None = None, *, seed: int = 0
) -> list[PolicyValue]:
    """IPS and DR values of ``none``, every arm and the logged mix, in that order.

    With a simulator's ``truth``, each candidate's true value is computed over
    the same sessions (:func:`logged_policies` keeps only those it knows).
    """
    log = logged_policies(joined, truth, seed=seed)
    truth_rows = truth_for(log.table, truth)
    out = []
    for name, target in log.candidates.items():
        value = PolicyValue(
            name,
            dr=doubly_robust(target, log.action, log.mu, log.reward, log.q),
            ips=ips(target, log.action, log.mu, log.reward),
        )
        if truth_rows is not None:
            value.true_value = true_value_of(truth_rows, target, log.keys)
        out.append(value)
    return out


@dataclass(frozen=True)
class PolicyGate:
    """The policy gate's decision: replace ``current`` by ``candidate``, or not."""

    candidate: str
    current: str
    difference: Estimate  # DR value of candidate minus current, paired, per session
    promote: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "current": self.current,
            "promote": self.promote,
            "reason": self.reason,
            "difference": self.difference.as_dict(),
        }


def gate_policy(
    joined: pa.Table, candidate: str, current: str = LOGGED, *, seed: int = 0
) -> PolicyGate:
    """Promote ``candidate`` only when the 95% interval of its doubly robust gain over
    ``current`` lies above zero (both valued on the same logged decisions).

    >>> import pyarrow as pa
    >>> arms = '{"control": {"none": 1}, "b": {"emphasize_cta": 1}}'
    >>> t = pa.table({"treatment": ["none", "emphasize_cta"] * 200,
    ...     "variant": ["control", "b"] * 200, "propensity": [0.5] * 400,
    ...     "treatment_propensity": [0.5] * 400, "revenue": [10.0, 30.0, 10.0, 20.0] * 100,
    ...     "arm_policies": [arms] * 400, "risk": [0.5] * 400, "device": ["mobile"] * 400})
    >>> gate_policy(t, "b", "control").promote, gate_policy(t, "control", "b").promote
    (True, False)
    """
    log = logged_policies(joined, seed=seed)
    for name in (candidate, current):
        if name not in log.candidates:
            known = ", ".join(log.candidates)
            raise InputError(f"no policy {name!r} in the log; it knows {known}")
    diff = dr_difference(
        log.candidates[candidate], log.candidates[current], log.action, log.mu, log.reward, log.q
    )
    span = f"{diff.value:+.2f} [{diff.ci_low:+.2f}, {diff.ci_high:+.2f}] per session"
    if diff.ci_low > 0:
        reason = f"{candidate} earns {span} more than {current}: the whole interval is above 0"
    else:
        reason = (
            f"{candidate} against {current}: {span}; the interval reaches 0 or below, so "
            f"{current} stays (more traffic narrows it)"
        )
    return PolicyGate(candidate, current, diff, diff.ci_low > 0, reason)


def _shares(t: pa.Table, arms: list[str]) -> dict[str, float]:
    """Each arm's share of the traffic (:func:`experiments.load.arm_shares`), summing to 1.

    An arm with no logged decision of its own gets an equal part of what the
    others leave.
    """
    shares = arm_shares(t)
    missing = [a for a in arms if a not in shares]
    if missing:
        rest = max(0.0, 1.0 - sum(shares.get(a, 0.0) for a in arms))
        for a in missing:
            shares[a] = rest / len(missing)
    total = sum(shares[a] for a in arms) or 1.0
    return {a: shares[a] / total for a in arms}


def truth_for(t: pa.Table, truth: pa.Table | None) -> dict[str, np.ndarray] | None:
    """The truth's latents and cart values of the evaluated sessions, in their order."""
    if truth is None:
        return None
    index = {sid: i for i, sid in enumerate(truth.column("session_id").to_pylist())}
    rows = [index.get(sid) for sid in t.column("session_id").to_pylist()]
    if any(r is None for r in rows):
        return None
    take = pa.array(rows)
    cols = ("intent", "hesitation", "size_share", "oracle_risk", "cart_value")
    return {c: np.asarray(truth.column(c).take(take), dtype=float) for c in cols}


def true_net_revenue(truth: dict[str, np.ndarray], key: str) -> np.ndarray:
    """Each session's expected net revenue had it been shown ``key``, under the world's truth."""
    shown = parse_treatment(key)
    base = np.log(truth["oracle_risk"] / (1.0 - truth["oracle_risk"]))
    effect = np.array(
        [
            shown_effect(shown, z, h, s)
            for z, h, s in zip(
                truth["intent"], truth["hesitation"], truth["size_share"], strict=True
            )
        ]
    )
    pct = discount_percent(shown)
    p = purchase_probability(base, effect)
    return np.asarray(truth["cart_value"] * (1.0 - pct / 100.0) * p)


def true_value_of(truth: dict[str, np.ndarray], target: np.ndarray, keys: list[str]) -> float:
    total = np.zeros(len(target))
    for j, key in enumerate(keys):
        weight = target[:, j]
        if weight.any():
            total += weight * true_net_revenue(truth, key)
    value = float(total.mean())
    return value if math.isfinite(value) else float("nan")


def _experiment_rows(
    settings: Settings, experiment: str | None, since: datetime | None
) -> tuple[str, pa.Table, int | None]:
    """The joined sessions of one experiment's latest policy version, from ``since`` to now."""
    now = datetime.now(UTC)
    joined = load_joined(settings, since or default_since(now), now)
    names = experiments_in(joined)
    if not names:
        raise NotReadyError("no decision in the window belongs to an experiment")
    name = experiment or names[0]
    if name not in names:
        raise NotReadyError(f"no decision of experiment {name!r}; the window has {names}")
    rows, version, _ = latest_version(joined, name)
    return name, rows, version


def evaluate_home(
    settings: Settings,
    *,
    experiment: str | None = None,
    since: datetime | None = None,
    truth: Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Every candidate policy of an experiment, valued from the home's decision log.

    Reads the decisions from ``since`` (default: 30 days ago) until now, joins
    their outcomes, keeps the experiment's latest policy version, and reads a
    simulator's truth from ``truth`` (default: ``HOME/simulation``) when there
    is one. Returns the ``microtune policy evaluate --json`` object.
    """
    name, rows, version = _experiment_rows(settings, experiment, since)
    truth_table = read_truth(truth or settings.paths.home / "simulation")
    values = evaluate_policies(rows, truth_table, seed=seed)
    return {
        "experiment": name,
        "policy_version": version,
        "sessions": values[0].dr.n,
        "reward": "revenue per session, net of discounts",
        "policies": [v.as_dict() for v in values],
    }


def gate_home(
    settings: Settings,
    candidate: str,
    current: str = LOGGED,
    *,
    experiment: str | None = None,
    since: datetime | None = None,
) -> dict[str, Any]:
    """:func:`gate_policy` on the home's decision log (the experiment's latest version)."""
    name, rows, version = _experiment_rows(settings, experiment, since)
    decision = gate_policy(rows, candidate, current)
    return {"experiment": name, "policy_version": version, **decision.as_dict()}


def gate_canary(settings: Settings, *, since: datetime | None = None) -> dict[str, Any]:
    """The policy gate on the running canary: challenger against champion, off-policy.

    Reads the decisions the registry's challenger logged while it ran as a canary
    (they carry both policies' probabilities), and applies :func:`gate_policy` to
    the challenger's arms as one policy against the champion's. Writes nothing:
    ``microtune policy promote`` moves the aliases when the gate passes.
    """
    champion, canary, share = policy_registry.served_versions(
        registry.reader(settings.tracking_uri)
    )
    if canary is None:
        raise NotReadyError(
            "no challenger policy runs as a canary: register one with "
            "`microtune policy register FILE --canary 0.1`, let it serve, then gate it"
        )
    now = datetime.now(UTC)
    joined = load_joined(settings, since or default_since(now), now)
    mine = pc.equal(pc.fill_null(joined.column("policy_version"), -1), int(canary))
    rows = joined.filter(mine)
    if rows.num_rows:
        marked = pc.match_substring(
            pc.fill_null(rows.column("arm_policies"), ""), f'"{policy_registry.CANARY_PREFIX}'
        )
        rows = rows.filter(marked)
    if rows.num_rows < 2:
        raise NotReadyError(
            f"policy v{canary} has no joined canary decisions yet: let it serve "
            "(sessions join their outcomes once they end), then gate it again"
        )
    decision = gate_policy(rows, CANARY, CHAMPION)
    return {
        "champion": champion,
        "challenger": canary,
        "canary_share": share,
        "sessions": decision.difference.n,
        **decision.as_dict(),
    }
