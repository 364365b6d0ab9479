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
  ``risk_zscore`` (against the rolling baseline of recent scores); ``segment``
  (the champion segmenter's id: ``{segment: {in: [2, 5]}}``);
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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.errors import InputError
from models.bandit import BanditSpec, ContextualBandit
from models.policy_registry import canary_arm, is_canary
from models.uplift import percent_of
from serving.guards import Guard, Guards, MarginSpend, RiskBaseline  # noqa: F401  (re-exported)
from serving.policy_doc import (
    Action,
    PolicyDoc,
    assign_variant,
    uniform_draw,
    variant_share,
)


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

    def settle(self, guard: Guard, now: float, shares: dict[str, float]) -> None:
        """Count an adjustment against ``guard``, and set the propensities from each
        arm's share (``shares``) and probabilities (``arm_policies``)."""
        if self.adjusted:
            guard.shown += 1
            guard.last_at = now
        mine, policies = self.treatment, self.arm_policies
        self.propensity = shares[self.variant] * policies[self.variant].get(mine, 0.0)
        self.treatment_propensity = sum(shares[v] * d.get(mine, 0.0) for v, d in policies.items())

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
        #: (index, percent) of the bandit's discount actions: the ones the margin
        #: budget can refuse.
        self._bandit_discounts = [
            (i, pct) for i, k in enumerate(self._bandit_actions) if (pct := percent_of(k)) > 0
        ]
        self._shares: dict[str, float] | None = None
        budget = doc.guard_rails.margin_budget
        #: The discount margin offered in the budget's window (None: no budget).
        self.margin = MarginSpend(budget.amount, budget.window_s) if budget else None
        #: A challenger served beside this policy to a share of the sessions, its arms
        #: logged as ``canary:<arm>`` (:mod:`models.policy_registry`).
        self.canary: tuple[Policy, float] | None = None

    def with_canary(self, candidate: Policy, share: float) -> Policy:
        """Serve ``candidate`` to ``share`` of the sessions; both decide every time.

        >>> champion = Policy.from_yaml("experiment: {variants: {control: {weight: 1}}}")
        >>> b = Policy.from_yaml("{version: 2, experiment: {variants: {b: {weight: 1}}}}")
        >>> p = champion.with_canary(b, 0.25)
        >>> p.shares(), p.version
        ({'control': 0.75, 'canary:b': 0.25}, 2)
        """
        self.canary, self._shares = (candidate, share), None
        return self

    def members(self) -> list[Policy]:
        """This policy, and its canary when one runs."""
        return [self] if self.canary is None else [self, self.canary[0]]

    @property
    def version(self) -> int:
        """The policy version decisions log: the challenger's while it runs as a canary."""
        return self.canary[0].doc.version if self.canary else self.doc.version

    def assign(self, session_id: str) -> str:
        """The arm a session is served by (``canary:<arm>`` when the canary serves it)."""
        if self.canary is not None:
            candidate, share = self.canary
            if uniform_draw(f"canary:{session_id}") < share:
                return canary_arm(assign_variant(candidate.doc.experiment, session_id))
        return assign_variant(self.doc.experiment, session_id)

    def safe_decision(self, session_id: str, reason: str) -> Decision:
        """No adjustment, for every arm alike: what a degraded score decides."""
        shares, variant = self.shares(), self.assign(session_id)
        return Decision(
            variant,
            [Chosen(Action.NONE.value, {}, reason)],
            shares[variant],
            arm_policies={v: {Action.NONE.value: 1.0} for v in shares},
            treatment_propensity=1.0,
        )

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
        canary = self.canary
        served = self.assign(session_id)
        decision = self.evaluate(
            session_id, risk, features, context, guard, now=now, draw=not is_canary(served)
        )
        if canary is not None:
            other = canary[0].evaluate(
                session_id, risk, features, context, guard, now=now, draw=is_canary(served)
            )
            policies = decision.arm_policies
            policies.update({canary_arm(v): d for v, d in other.arm_policies.items()})
            if is_canary(served):
                other.variant, decision, other = served, other, decision
            decision.arm_policies = policies
            decision.bandit_context = decision.bandit_context or other.bandit_context
        decision.settle(guard, now, self.shares())
        owner = canary[0] if canary is not None and is_canary(decision.variant) else self
        if owner.margin is not None:
            owner.margin.spend(_margin(decision.treatment, features), now)
        return decision

    def _affordable(self, key: str, features: dict[str, Any], now: float) -> bool:
        """Whether the margin budget still allows offering treatment ``key`` here."""
        return self.margin is None or self.margin.allows(_margin(key, features), now)

    def shares(self) -> dict[str, float]:
        """Each arm's probability of being assigned a session (canary arms included)."""
        if self._shares is None:
            e = self.doc.experiment
            self._shares = {v: variant_share(e, v) for v in e.variants}
            if self.canary is not None:
                candidate, share = self.canary
                c = candidate.doc.experiment
                self._shares = {v: (1.0 - share) * p for v, p in self._shares.items()} | {
                    canary_arm(v): share * variant_share(c, v) for v in c.variants
                }
        return self._shares

    def evaluate(
        self,
        session_id: str,
        risk: float,
        features: dict[str, Any],
        context: dict[str, Any],
        guard: Guard,
        *,
        now: float,
        draw: bool = True,
    ) -> Decision:
        """:meth:`decide` without its bookkeeping: the session's arm's decision and every
        arm's probabilities (``arm_policies``), leaving ``guard`` and the propensities
        alone. A learning arm draws its choice only when ``draw``."""
        doc = self.doc
        variant = assign_variant(doc.experiment, session_id)
        pct, z = self.baseline.percentile(risk), self.baseline.zscore(risk)
        self.baseline.add(risk)
        values: dict[str, Any] = {"risk": risk, "risk_percentile": pct, "risk_zscore": z}
        values["segment"] = features.get("segment")
        values.update({f"feature:{k}": v for k, v in features.items()})
        values.update({f"context:{k}": v for k, v in context.items()})
        seen = self._bandit_context(values) if doc.bandit is not None else None
        policies: dict[str, dict[str, float]] = {}
        decision = _none(variant, "")
        for v, arm in doc.experiment.variants.items():
            if arm.policy == "bandit":
                assert seen is not None  # the schema requires a bandit section
                mine = draw and v == variant
                chosen, dist = self._bandit_arm(v, seen, guard, now, session_id, mine, features)
            else:
                chosen = self._choose(v, values, guard, now, features)
                dist = {chosen.treatment: 1.0}
            policies[v] = dist
            if v == variant:
                decision = chosen
        decision.arm_policies = policies
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
        features: dict[str, Any],
    ) -> tuple[Decision, dict[str, float]]:
        """The bandit's probabilities given its context ``seen``, after the guard rails;
        its draw when ``draw``."""
        blocked = self._blocked(variant, guard, now)
        if blocked is not None or self.bandit is None:
            return blocked or _none(variant, "no bandit loaded"), {Action.NONE.value: 1.0}
        actions, probs = self.bandit.spec.actions, self.bandit.pmf(seen)
        if self.margin is not None:  # an offer the budget cannot pay gets no probability
            cart = float(features.get("cart_value") or 0.0)
            for i, pct in self._bandit_discounts:
                if not self.margin.allows(cart * pct / 100.0, now):
                    probs[i] = 0.0
            total = sum(probs)
            probs = [p / total for p in probs]
        dist = dict(zip(actions, probs, strict=True))
        if not draw:
            return _none(variant, ""), dist
        u, acc, key = uniform_draw(f"{session_id}:{now!r}"), 0.0, actions[-1]
        for k, p in zip(actions, probs, strict=True):  # the inverse of the cumulative pmf
            acc += p
            if u < acc:
                key = k
                break
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

    def _choose(
        self,
        variant: str,
        values: dict[str, Any],
        guard: Guard,
        now: float,
        features: dict[str, Any],
    ) -> Decision:
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
            if rule.action == Action.SHOW_DISCOUNT_POPUP and not self._affordable(
                treatment_key([Chosen(rule.action.value, params, "")]), features, now
            ):
                continue  # over the margin budget: the next rule may apply
            chosen.append(Chosen(rule.action.value, params, f"rule {rule.name}", rule.name))
            if len(chosen) >= rails.max_actions_per_decision:
                break
        if not chosen:
            return _none(variant, "no rule matched")
        return Decision(variant, chosen)


def _margin(key: str, features: dict[str, Any]) -> float:
    """What offering treatment ``key`` puts at stake: the cart's value times its discount.

    >>> _margin("show_discount_popup@15", {"cart_value": 80.0}), _margin("emphasize_cta", {})
    (12.0, 0.0)
    """
    pct = percent_of(key)
    return float(features.get("cart_value") or 0.0) * pct / 100.0 if pct else 0.0
