"""Simulated visitors: what they do before a decision, and how they answer it.

A :class:`Visitor` is one cart session of a generated log (:mod:`events.synth`)
with its latent state. Its browsing events, up to the moment it would check
out or leave, come from the generator; its ending is drawn here, *after* the
scorer has decided, from the world's true effects (:mod:`events.synth.effects`)
of what it was shown. Each visitor draws from a random stream of its own,
seeded by the run's seed and its position, so the same seed and the same
decisions give the same outcomes, whatever the order visitors are run in.

>>> from events.synth import GeneratorConfig
>>> vs = visitors(GeneratorConfig(sessions=60, days=1, seed=3))
>>> v = vs[0]
>>> evs = v.arrive(1.8e9)
>>> evs[-1]["event_type"] not in ("checkout_start", "purchase"), v.cart_value > 0
(True, True)
>>> evs[-1]["ts"], v.decided_at
('2027-01-15T08:00:00Z', 1800000000.0)
>>> ending(v, [("none", {})], seed=3) == ending(v, [("none", {})], seed=3)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from events.contract import EventType
from events.synth import GeneratorConfig, generate_events
from events.synth.effects import (
    ACTIONS,
    discount_percent,
    purchase_probability,
    shown_effect,
)
from events.synth.ideal import ideal_risk

Shown = Sequence[tuple[str, Mapping[str, Any]]]
#: Share of abandoning visitors who start the checkout before leaving (as the generator).
CHECKOUT_ABANDON = 0.25
#: Seconds from the decision to the checkout, and from the checkout to the purchase.
CHECKOUT_AFTER_S, PURCHASE_AFTER_S = 8.0, 45.0
#: Share of shown adjustments the front end confirms with an ``exposure`` event.
EXPOSURE_RATE = 0.95
_ENDINGS = {EventType.CHECKOUT_START.value, EventType.PURCHASE.value}


@dataclass
class Visitor:
    """One cart session up to its decision point, with the truth behind it."""

    index: int
    session_id: str
    user_id: str | None
    device: str
    browser: str
    consent: bool
    #: Events before the ending, as generated (``ts`` a datetime).
    events: list[dict[str, Any]]
    intent: float
    hesitation: float
    size_share: float
    #: Abandonment log-odds without any adjustment (the oracle's).
    base_logit: float
    cart_value: float
    #: The best risk the events so far allow (:mod:`events.synth.ideal`), at the decision.
    ideal_risk: float
    #: When the visitor is decided on: its last event as generated, until :meth:`arrive`.
    decided_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.decided_at = self.events[-1]["ts"].timestamp()

    def arrive(self, now_s: float) -> list[dict[str, Any]]:
        """The events, as JSON rows, shifted so that the last one is at ``now_s``."""
        shift = now_s - self.events[-1]["ts"].timestamp()
        self.decided_at = now_s
        return [_shifted(e, shift) for e in self.events]

    @property
    def oracle_risk(self) -> float:
        """The true abandonment probability without an adjustment."""
        return 1.0 / (1.0 + math.exp(-self.base_logit))

    def truth(self, action: str, params: Mapping[str, Any]) -> tuple[float, float]:
        """Purchase probability and expected revenue if shown only ``action``."""
        p = float(
            purchase_probability(
                np.array([self.base_logit]),
                np.array([shown_effect([(action, params)], *self.latents)]),
            )[0]
        )
        return p, p * self.cart_value * (1.0 - discount_percent([(action, params)]) / 100.0)

    @property
    def latents(self) -> tuple[float, float, float]:
        return self.intent, self.hesitation, self.size_share


@dataclass(frozen=True)
class Ending:
    """How a visitor's session ends, given what it was shown."""

    purchased: bool
    p_purchase: float
    revenue: float
    discount_percent: float
    exposed: bool
    events: list[dict[str, Any]]


def visitors(cfg: GeneratorConfig, limit: int | None = None, run: str = "") -> list[Visitor]:
    """The cart sessions of a generated log as visitors, in the order they started.

    ``run`` prefixes every session and event id, so that two runs of one world
    in the same home are different visitors (variants hash the session id).
    """
    events, oracle = generate_events(cfg)
    truth = {r["session_id"]: r for r in oracle.to_pylist() if r["added_to_cart"]}
    ideal_table = ideal_risk(events, oracle, cfg)
    # A visitor is decided on at its last browsing event: the last ideal row of its session.
    ideal = dict(
        zip(
            ideal_table["session_id"].to_pylist(),
            ideal_table["ideal_risk"].to_pylist(),
            strict=True,
        )
    )
    by_session: dict[str, list[dict[str, Any]]] = {}
    carts = events.filter(pc.is_in(events["session_id"], pa.array(list(truth))))
    for row in carts.to_pylist():
        by_session.setdefault(row["session_id"], []).append(row)
    plans = []
    for sid in sorted(by_session):
        evs = [e for e in by_session[sid] if e["event_type"] not in _ENDINGS]
        if not evs or not any(e["event_type"] == EventType.ADD_TO_CART.value for e in evs):
            continue
        plans.append((sid, evs))
    if limit is not None:
        plans = plans[:limit]
    out = []
    for i, (sid, evs) in enumerate(plans):
        o = truth[sid]
        p = o["p_abandon"]
        # The order total, as the generator makes it: items added less items removed.
        cart = sum(
            (e["cart_value"] or 0.0) * (1 if e["event_type"] == "add_to_cart" else -1)
            for e in evs
            if e["event_type"] in ("add_to_cart", "remove_from_cart")
        )
        out.append(
            Visitor(
                index=i,
                session_id=f"{run}{sid}",
                user_id=o["user_id"],
                device=evs[0]["device"],
                browser=evs[0]["browser"],
                consent=bool(evs[0]["consent"]),
                events=[
                    {**e, "session_id": f"{run}{sid}", "event_id": f"{run}{e['event_id']}"}
                    for e in evs
                ],
                intent=o["intent"],
                hesitation=o["hesitation"],
                size_share=o["size_share"],
                base_logit=math.log(p / (1.0 - p)),
                cart_value=round(cart, 2),
                ideal_risk=ideal[sid],
            )
        )
    return out


def _shifted(e: dict[str, Any], shift: float) -> dict[str, Any]:
    ts = datetime.fromtimestamp(e["ts"].timestamp() + shift, UTC)
    return {**e, "ts": ts.isoformat().replace("+00:00", "Z")}


def ending(v: Visitor, shown: Shown, seed: int) -> Ending:
    """Draw the visitor's ending from the world, given everything it was shown."""
    rng = np.random.default_rng([seed, 7, v.index])
    u_buy, u_checkout, u_exposed = rng.random(3)
    effect = shown_effect(shown, *v.latents)
    p = float(purchase_probability(np.array([v.base_logit]), np.array([effect]))[0])
    bought = bool(u_buy < p)
    pct = discount_percent(shown)
    revenue = round(v.cart_value * (1.0 - pct / 100.0), 2) if bought else 0.0
    adjusted = [a for a, _ in shown if a != "none"]
    exposed = bool(adjusted) and bool(u_exposed < EXPOSURE_RATE)
    evs: list[dict[str, Any]] = []
    if exposed:
        evs.append(_event(v, "exposure", 0.5, element_id=adjusted[-1]))
    if bought or u_checkout < CHECKOUT_ABANDON:
        evs.append(_event(v, "checkout_start", CHECKOUT_AFTER_S, page_type="checkout"))
    if bought:
        evs.append(
            _event(
                v, "purchase", CHECKOUT_AFTER_S + PURCHASE_AFTER_S,
                page_type="checkout", cart_value=revenue,
            )
        )  # fmt: skip
    return Ending(bought, p, revenue, pct, exposed, evs)


def _event(v: Visitor, kind: str, after_s: float, **fields: Any) -> dict[str, Any]:
    ts = datetime.fromtimestamp(v.decided_at + after_s, UTC)
    row = {
        "event_id": f"{v.session_id}-{kind}",
        "session_id": v.session_id,
        "user_id": v.user_id,
        "ts": ts.isoformat().replace("+00:00", "Z"),
        "event_type": kind,
        "page_type": fields.pop("page_type", "cart"),
        "device": v.device,
        "browser": v.browser,
        "consent": v.consent,
    }
    return {**row, **fields}


def truth_row(v: Visitor, decision: Mapping[str, Any], end: Ending) -> dict[str, Any]:
    """The ground truth of one decision point: never visible to the scorer."""
    row: dict[str, Any] = {
        "session_id": v.session_id,
        "decided_at": v.decided_at,
        "consent": v.consent,
        "variant": decision["variant"],
        "action": decision["action"],
        "oracle_risk": v.oracle_risk,
        "ideal_risk": v.ideal_risk,
        "intent": v.intent,
        "hesitation": v.hesitation,
        "size_share": v.size_share,
        "cart_value": v.cart_value,
        "p_purchase": end.p_purchase,
        "purchased": end.purchased,
        "revenue": end.revenue,
        "exposed": end.exposed,
    }
    for action in ACTIONS:
        params = decision["params"] if action == decision["action"] else {}
        p, revenue = v.truth(action, params)
        row[f"p_purchase_{action}"] = p
        row[f"revenue_{action}"] = revenue
    return row
