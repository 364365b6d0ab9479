"""The decision policy: rules from YAML to micro-adjustments, with guard rails.

A policy is a YAML file (``serving/policy.yaml`` ships as the default; point
``MICROTUNE_SERVE__POLICY`` at your own). It is validated whole when loaded;
a reload that fails keeps the previous policy.

* **Rules** are tried in order. A rule has a condition, an action with
  parameters and an ``enabled`` flag (the per-rule feature flag). Every rule
  whose condition holds contributes its action, up to
  ``max_actions_per_decision`` actions.
* **Conditions** combine with ``all`` (AND), ``any`` (OR) and ``not``. A leaf
  compares one subject with operators ``eq ne gt gte lt lte in``. Subjects:
  ``risk``; ``risk_percentile`` (the risk's rank among recent scores, 0-100);
  ``risk_zscore`` (against the rolling baseline of recent scores);
  ``feature:<name>`` and ``context:<name>``. A missing value never matches.
* **Guard rails**: at most ``max_adjustments_per_session`` adjustments per
  session, and ``cooldown_seconds`` between two of them.
* **Experiment**: each session is hashed to a variant, deterministically.
  The ``control`` variant gets no adjustment; treatment variants may override
  action parameters. A variant with ``policy: bandit`` is decided by the
  contextual bandit of the ``bandit:`` section (:mod:`models.bandit`) instead
  of the rules. Every arm is evaluated on every decision, and the decision
  carries each arm's probability of each treatment (``arm_policies``) for
  off-policy evaluation.

Examples
--------
>>> policy = Policy.from_yaml('''
... rules:
...   - name: hesitant-cart
...     when: {all: [{risk: {gte: 0.6}}, {"feature:cart_value": {gt: 0}}]}
...     action: show_discount_popup
...     params: {percent: 10}
... experiment: {variants: {treatment: {weight: 1.0}}}
... ''')
>>> d = policy.decide("s1", 0.8, {"cart_value": 30.0}, {}, Guard(), now=0.0)
>>> [(a.action, a.params, a.rule) for a in d.actions], d.variant
([('show_discount_popup', {'percent': 10}, 'hesitant-cart')], 'treatment')
>>> policy.decide("s1", 0.2, {"cart_value": 30.0}, {}, Guard(), now=0.0).actions[0].action
'none'
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from core.errors import InputError
from models.bandit import BanditSpec, ContextualBandit
from serving.policy_doc import Action, Experiment, PolicyDoc

# ---------------------------------------------------------------------------
# Runtime state: rolling risk baseline and per-session guard state


class RiskBaseline:
    """Recent risk scores: percentile rank and z-score of a new score.

    >>> b = RiskBaseline(window=4, min_samples=2)
    >>> for r in (0.1, 0.2, 0.3, 0.4): b.add(r)
    >>> b.percentile(0.35), round(b.zscore(0.4), 3)
    (75.0, 1.342)
    """

    def __init__(self, window: int, min_samples: int) -> None:
        self.window, self.min_samples = window, min_samples
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []
        self._sum = self._sq = 0.0

    def add(self, risk: float) -> None:
        if math.isnan(risk):
            return
        self._fifo.append(risk)
        insort(self._sorted, risk)
        self._sum += risk
        self._sq += risk * risk
        if len(self._fifo) > self.window:
            old = self._fifo.popleft()
            del self._sorted[bisect_left(self._sorted, old)]
            self._sum -= old
            self._sq -= old * old

    def __len__(self) -> int:
        return len(self._fifo)

    def percentile(self, risk: float) -> float | None:
        """Share (0-100) of recent scores strictly below ``risk``; None until warmed up."""
        if len(self) < self.min_samples:
            return None
        return 100.0 * bisect_left(self._sorted, risk) / len(self._sorted)

    def zscore(self, risk: float) -> float | None:
        n = len(self)
        if n < self.min_samples:
            return None
        mean = self._sum / n
        var = max(self._sq / n - mean * mean, 0.0)
        return (risk - mean) / math.sqrt(var) if var > 1e-12 else 0.0


@dataclass
class Guard:
    """Adjustments shown to one session so far."""

    shown: int = 0
    last_at: float | None = None


class Guards:
    """Guard state of recent sessions (least recently used evicted)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._by_session: OrderedDict[str, Guard] = OrderedDict()

    def get(self, session_id: str) -> Guard:
        g = self._by_session.get(session_id)
        if g is None:
            g = self._by_session[session_id] = Guard()
            if len(self._by_session) > self.capacity:
                self._by_session.popitem(last=False)
        else:
            self._by_session.move_to_end(session_id)
        return g


# ---------------------------------------------------------------------------
# Deciding


@dataclass(frozen=True)
class Chosen:
    action: str
    params: dict[str, Any]
    reason: str
    rule: str | None = None


@dataclass
class Decision:
    variant: str
    actions: list[Chosen] = field(default_factory=list)
    #: The probability with which these actions were chosen: the variant's
    #: assignment probability times the policy's probability of the actions given
    #: the variant, after the guard rails (1 for these deterministic rules).
    propensity: float = 1.0
    #: What every arm of the experiment would have applied to this visitor at this
    #: moment: each arm's probability of each treatment key (:func:`treatment_key`;
    #: a rule arm gives its one treatment probability 1). Off-policy evaluation
    #: reads each arm as a policy of its own from them.
    arm_policies: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The probability of this decision's treatment over the whole experiment:
    #: the summed shares of the arms that would have applied it (the propensity
    #: inverse propensity scoring divides by).
    treatment_propensity: float = 1.0
    #: What the bandit sees of this decision (None when the policy has no bandit):
    #: every arm's decision teaches it, weighted by ``treatment_propensity``.
    bandit_context: dict[str, Any] | None = None

    @property
    def adjusted(self) -> bool:
        return any(a.action != Action.NONE for a in self.actions)

    @property
    def treatment(self) -> str:
        return treatment_key(self.actions)


def treatment_key(actions: list[Chosen]) -> str:
    """The treatment that actions apply, as one string; a discount names its percent.

    >>> treatment_key([Chosen("show_discount_popup", {"percent": 15, "ttl_s": 600}, "rule")])
    'show_discount_popup@15'
    >>> treatment_key([Chosen("none", {}, "no rule matched")])
    'none'
    """
    parts = []
    for a in actions:
        if a.action == Action.NONE:
            continue
        pct = a.params.get("percent") if a.action == Action.SHOW_DISCOUNT_POPUP else None
        parts.append(a.action if pct is None else f"{a.action}@{float(pct):g}")
    return "+".join(parts) or Action.NONE.value


def assign_variant(experiment: Experiment, session_id: str) -> str:
    """Deterministic variant of a session: a hash of experiment and session to [0, 1).

    >>> from serving.policy_doc import Variant
    >>> e = Experiment(variants={"control": Variant(weight=1), "b": Variant(weight=1)})
    >>> assign_variant(e, "s1") == assign_variant(e, "s1")
    True
    """
    digest = hashlib.sha256(f"{experiment.name}:{session_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    total = sum(v.weight for v in experiment.variants.values())
    acc = 0.0
    for name, v in experiment.variants.items():
        acc += v.weight / total
        if u < acc:
            return name
    return next(reversed(experiment.variants))


def variant_share(experiment: Experiment, variant: str) -> float:
    """The probability that a session is assigned ``variant``: its weight's share.

    >>> from serving.policy_doc import Variant
    >>> e = Experiment(variants={"control": Variant(weight=1), "b": Variant(weight=3)})
    >>> variant_share(e, "b")
    0.75
    """
    total = sum(v.weight for v in experiment.variants.values())
    v = experiment.variants.get(variant)
    return v.weight / total if v is not None and total > 0 else 0.0


def _uniform(key: str) -> float:
    """A uniform draw in [0, 1) fixed by ``key`` (the same decision draws the same)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _none(variant: str, reason: str) -> Decision:
    return Decision(variant, [Chosen(Action.NONE.value, {}, reason)])


class Policy:
    """A validated policy document plus its rolling risk baseline."""

    def __init__(self, doc: PolicyDoc, source: str = "<inline>") -> None:
        self.doc, self.source = doc, source
        self.baseline = RiskBaseline(doc.dynamic.window, doc.dynamic.min_samples)
        #: Treatment key -> (action, params) of the bandit's choices.
        self._bandit_actions: dict[str, tuple[str, dict[str, Any]]] = {}
        self.bandit: ContextualBandit | None = None
        if doc.bandit is not None:
            for a in doc.bandit.actions:
                chosen = Chosen(a.action.value, dict(a.params), "")
                self._bandit_actions[treatment_key([chosen])] = (a.action.value, dict(a.params))
            self.bandit = ContextualBandit(self.bandit_spec())

    def bandit_spec(self) -> BanditSpec:
        """The bandit this policy's ``bandit:`` section describes (None without one)."""
        b = self.doc.bandit
        if b is None:
            raise InputError("this policy has no `bandit:` section")
        return BanditSpec(
            actions=tuple(self._bandit_actions),
            numeric=tuple(b.numeric),
            categorical=tuple(b.categorical),
            epsilon=b.epsilon,
        )

    def attach_bandit(self, bandit: ContextualBandit) -> None:
        """Decide with a learnt bandit; it must choose among this policy's actions."""
        spec = self.bandit_spec()
        if (bandit.spec.actions, bandit.spec.numeric, bandit.spec.categorical) != (
            spec.actions,
            spec.numeric,
            spec.categorical,
        ):
            raise InputError(
                f"the learnt bandit chooses among {bandit.spec.actions} from "
                f"{bandit.spec.numeric + bandit.spec.categorical}; the policy's `bandit:` "
                f"section says {spec.actions} from {spec.numeric + spec.categorical}: "
                "retrain it, or keep the policy's section as it was"
            )
        self.bandit = bandit

    @classmethod
    def from_yaml(cls, text: str, source: str = "<inline>") -> Policy:
        """Parse and validate; errors name the place in the document."""
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"policy {source}: not valid YAML: {exc}") from exc
        try:
            return cls(PolicyDoc.model_validate(data), source)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}"
                for e in exc.errors()
            )
            raise InputError(f"policy {source} is invalid: {problems}") from exc

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            return cls.from_yaml(path.read_text(), str(path))
        except OSError as exc:
            raise InputError(f"cannot read policy {path}: {exc.strerror}") from exc

    def decide(
        self,
        session_id: str,
        risk: float,
        features: dict[str, Any],
        context: dict[str, Any],
        guard: Guard,
        *,
        now: float,
    ) -> Decision:
        """The adjustments for one score; updates ``guard`` when one is made.

        Every arm is evaluated on the same values (rules are cheap, the bandit
        about 60 µs): the session's own arm decides, and the others say with what
        probability they would have applied each treatment.
        """
        doc = self.doc
        variant = assign_variant(doc.experiment, session_id)
        pct, z = self.baseline.percentile(risk), self.baseline.zscore(risk)
        self.baseline.add(risk)
        values: dict[str, Any] = {"risk": risk, "risk_percentile": pct, "risk_zscore": z}
        values.update({f"feature:{k}": v for k, v in features.items()})
        values.update({f"context:{k}": v for k, v in context.items()})
        seen = self._bandit_context(values) if doc.bandit is not None else None
        policies: dict[str, dict[str, float]] = {}
        decision = _none(variant, "")
        for v, arm in doc.experiment.variants.items():
            if arm.policy == "bandit":
                assert seen is not None  # the schema requires a bandit section
                chosen, dist = self._bandit_arm(v, seen, guard, now, session_id, v == variant)
            else:
                chosen = self._choose(v, values, guard, now)
                dist = {chosen.treatment: 1.0}
            policies[v] = dist
            if v == variant:
                decision = chosen
        if decision.adjusted:
            guard.shown += 1
            guard.last_at = now
        mine = decision.treatment
        share = {v: variant_share(doc.experiment, v) for v in policies}
        decision.propensity = share[variant] * policies[variant].get(mine, 0.0)
        decision.arm_policies = policies
        decision.treatment_propensity = sum(
            share[v] * d.get(mine, 0.0) for v, d in policies.items()
        )
        decision.bandit_context = seen
        return decision

    def _bandit_arm(
        self,
        variant: str,
        seen: dict[str, Any],
        guard: Guard,
        now: float,
        session_id: str,
        draw: bool,
    ) -> tuple[Decision, dict[str, float]]:
        """The bandit's probabilities given its context ``seen``, after the guard rails;
        its draw when ``draw``."""
        blocked = self._blocked(variant, guard, now)
        if blocked is not None or self.bandit is None:
            return blocked or _none(variant, "no bandit loaded"), {Action.NONE.value: 1.0}
        bandit = self.bandit
        probs = bandit.probabilities(seen)
        dist = {k: float(p) for k, p in zip(bandit.spec.actions, probs, strict=True)}
        if not draw:
            return _none(variant, ""), dist
        u = _uniform(f"{session_id}:{now!r}")
        key = bandit.spec.actions[
            min(int(np.searchsorted(np.cumsum(probs), u, "right")), len(probs) - 1)
        ]
        if key == Action.NONE.value:
            return _none(variant, f"bandit chose none (p={dist[key]:.3f})"), dist
        action, params = self._bandit_actions[key]
        reason = f"bandit (p={dist[key]:.3f})"
        return Decision(variant, [Chosen(action, dict(params), reason, None)]), dist

    def _bandit_context(self, values: dict[str, Any]) -> dict[str, Any]:
        assert self.doc.bandit is not None
        out: dict[str, Any] = {}
        for name in self.doc.bandit.numeric:
            out[name] = values.get(name if name == "risk" else f"feature:{name}")
        for name in self.doc.bandit.categorical:
            out[name] = values.get(f"context:{name}")
        return out

    def _blocked(self, variant: str, guard: Guard, now: float) -> Decision | None:
        """The safe decision when control or the guard rails allow no adjustment."""
        if variant == "control":
            return _none(variant, "control group: no adjustment")
        rails = self.doc.guard_rails
        if guard.shown >= rails.max_adjustments_per_session:
            return _none(variant, f"session cap reached ({guard.shown} adjustments)")
        if guard.last_at is not None and now - guard.last_at < rails.cooldown_seconds:
            left = rails.cooldown_seconds - (now - guard.last_at)
            return _none(variant, f"cooldown: {left:.0f} s until the next adjustment")
        return None

    def _choose(self, variant: str, values: dict[str, Any], guard: Guard, now: float) -> Decision:
        """What the rules of ``variant`` apply given the values and the guard rails."""
        doc = self.doc
        blocked = self._blocked(variant, guard, now)
        if blocked is not None:
            return blocked
        rails = doc.guard_rails
        overrides = doc.experiment.variants[variant].params
        chosen: list[Chosen] = []
        for rule in doc.rules:
            if not rule.enabled or (rule.variants is not None and variant not in rule.variants):
                continue
            if rule.action == Action.NONE or not rule.when.holds(values):
                continue
            if any(c.action == rule.action.value for c in chosen):
                continue
            params = {**rule.params, **overrides.get(rule.action.value, {})}
            chosen.append(Chosen(rule.action.value, params, f"rule {rule.name}", rule.name))
            if len(chosen) >= rails.max_actions_per_decision:
                break
        if not chosen:
            return _none(variant, "no rule matched")
        return Decision(variant, chosen)
