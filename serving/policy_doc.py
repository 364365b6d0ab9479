"""The policy file's schema: rules, conditions, the experiment, guard rails, the bandit.

A policy YAML is validated whole against these models when it is loaded
(:meth:`serving.policy.Policy.load`); an invalid file is refused with the
field that is wrong.
"""

from __future__ import annotations

import hashlib
import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")


class Action(StrEnum):
    SHOW_DISCOUNT_POPUP = "show_discount_popup"
    HIGHLIGHT_SIZE_GUIDE = "highlight_size_guide"
    EMPHASIZE_CTA = "emphasize_cta"
    SHOW_SOCIAL_PROOF = "show_social_proof"
    NONE = "none"


OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in")
_SUBJECTS = ("risk", "risk_percentile", "risk_zscore", "segment")


# ---------------------------------------------------------------------------
# Conditions


class Leaf(BaseModel):
    """``{subject: {op: value}}``, parsed into its three parts."""

    model_config = ConfigDict(frozen=True)
    subject: str
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in"]
    value: Any

    def holds(self, values: dict[str, Any]) -> bool:
        v = values.get(self.subject)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return False
        try:
            if self.op == "eq":
                return bool(v == self.value)
            if self.op == "ne":
                return bool(v != self.value)
            if self.op == "in":
                return v in self.value
            return bool(
                {"gt": v > self.value, "gte": v >= self.value, "lt": v < self.value}.get(
                    self.op, v <= self.value
                )
            )
        except TypeError:  # comparing a string feature with a number: no match
            return False


class Node(BaseModel):
    """A condition tree: exactly one of ``all``, ``any``, ``not`` or a leaf."""

    model_config = ConfigDict(frozen=True)
    all: list[Node] | None = None
    any: list[Node] | None = None
    not_: Node | None = Field(default=None, alias="not")
    leaf: Leaf | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError(
                "a condition is one of {all: [...]}, {any: [...]}, {not: ...} or "
                "{subject: {op: value}}"
            )
        ((key, body),) = data.items()
        if key in ("all", "any", "not"):
            return data
        if key not in _SUBJECTS and not key.startswith(("feature:", "context:")):
            raise ValueError(
                f"unknown subject {key!r}: use risk, risk_percentile, risk_zscore, "
                "segment, feature:<name> or context:<name>"
            )
        if not isinstance(body, dict) or len(body) != 1:
            raise ValueError(f"{key}: expected one comparison like {{gte: 0.5}}")
        ((op, value),) = body.items()
        if op not in OPS:
            raise ValueError(f"{key}: unknown operator {op!r} (use one of {', '.join(OPS)})")
        return {"leaf": {"subject": key, "op": op, "value": value}}

    def holds(self, values: dict[str, Any]) -> bool:
        if self.leaf is not None:
            return self.leaf.holds(values)
        if self.all is not None:
            return all(n.holds(values) for n in self.all)
        if self.any is not None:
            return any(n.holds(values) for n in self.any)
        assert self.not_ is not None
        return not self.not_.holds(values)

    def subjects(self) -> set[str]:
        if self.leaf is not None:
            return {self.leaf.subject}
        kids = self.all or self.any or ([self.not_] if self.not_ else [])
        return set().union(*(k.subjects() for k in kids)) if kids else set()


# ---------------------------------------------------------------------------
# The policy document


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    enabled: bool = True
    when: Node
    action: Action
    params: dict[str, Any] = Field(default_factory=dict)
    variants: list[str] | None = Field(
        default=None, description="Treatment variants the rule applies to (default: all)."
    )


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(gt=0)
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-action parameter overrides."
    )
    policy: Literal["rules", "bandit"] = Field(
        default="rules",
        description="Who decides in this arm: the rules, or the learning bandit (`bandit:`).",
    )


class BanditAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Action
    params: dict[str, Any] = Field(default_factory=dict)


class BanditDoc(BaseModel):
    """The learning policy: what it may choose, what it looks at, how much it explores."""

    model_config = ConfigDict(extra="forbid")
    actions: list[BanditAction] = Field(min_length=2)
    numeric: list[str] = Field(
        default_factory=lambda: ["risk"],
        description="`risk` and feature names, read as numbers.",
    )
    categorical: list[str] = Field(
        default_factory=lambda: ["device", "page_type"],
        description="Request context fields, read as categories.",
    )
    epsilon: float = Field(default=0.05, gt=0, lt=1, description="The exploration share.")

    @field_validator("actions")
    @classmethod
    def _with_none(cls, v: list[BanditAction]) -> list[BanditAction]:
        if not any(a.action == Action.NONE for a in v):
            raise ValueError("the bandit's actions must include `none`")
        return v


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "abandonment-v1"
    variants: dict[str, Variant] = Field(
        default_factory=lambda: {"control": Variant(weight=0.1), "treatment": Variant(weight=0.9)}
    )

    @field_validator("variants")
    @classmethod
    def _some(cls, v: dict[str, Variant]) -> dict[str, Variant]:
        if not v:
            raise ValueError("at least one variant is needed")
        return v


class MarginBudget(BaseModel):
    """The discount margin one policy may offer in a rolling window, in a scorer process.

    An offer costs the cart's value times the discount (what would be given
    away if the visitor buys); once ``amount`` is offered within ``window_s``,
    no arm offers a discount until older offers leave the window.
    """

    model_config = ConfigDict(extra="forbid")
    amount: float = Field(gt=0)
    window_s: float = Field(default=3600.0, gt=0)


class GuardRails(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_adjustments_per_session: int = Field(default=3, ge=0)
    cooldown_seconds: float = Field(default=60.0, ge=0)
    max_actions_per_decision: int = Field(default=1, ge=1)
    margin_budget: MarginBudget | None = None


class Dynamic(BaseModel):
    """The rolling baseline behind ``risk_percentile`` and ``risk_zscore``."""

    model_config = ConfigDict(extra="forbid")
    window: int = Field(default=2000, ge=10)
    min_samples: int = Field(default=100, ge=1)


class PolicyDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[int, Field(ge=1)] = 1
    rules: list[Rule] = Field(default_factory=list)
    guard_rails: GuardRails = Field(default_factory=GuardRails)
    experiment: Experiment = Field(default_factory=Experiment)
    dynamic: Dynamic = Field(default_factory=Dynamic)
    bandit: BanditDoc | None = None

    @model_validator(mode="after")
    def _bandit_arms_need_a_bandit(self) -> PolicyDoc:
        arms = [n for n, v in self.experiment.variants.items() if v.policy == "bandit"]
        if arms and self.bandit is None:
            raise ValueError(f"variants {arms} use the bandit: add a `bandit:` section")
        if "control" in arms:
            raise ValueError("`control` gets no adjustment; it cannot be a bandit arm")
        return self


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


def uniform_draw(key: str) -> float:
    """A uniform draw in [0, 1) fixed by ``key`` (the same decision draws the same)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
