"""Deterministic synthetic micro-behaviour event logs, with the ground truth behind them.

The generator simulates shoppers. Every session has two hidden traits: an intent
``z`` (how much the visitor wants to buy; correlated with a persistent per-user
trait) and a hesitation ``h``. Both shape what the visitor does (page views,
hovers, scrolls, zooms, size-guide opens, cart adds and removes) *and* whether a
session that added to cart ends in a purchase or is abandoned. The true
abandonment probability of every cart session is kept in an oracle table, so a
model trained on the events can be scored against the best achievable result.

Everything is drawn from :func:`numpy.random.default_rng` seeded by
:attr:`GeneratorConfig.seed` and computed column-wise, so the same configuration
always yields the same bytes, and a million events take a few seconds.

Notes
-----
The simulated world, in the order it is drawn:

* **Users.** About ``sessions / 3`` signed-in users share ~70 % of the sessions:
  one each, the rest by lognormal weights (heavy-tailed; several sessions per
  user are common). Each user has a trait ``u ~ N(0, 1)``; the other ~30 % of
  sessions are anonymous (``user_id`` null).
* **Latents.** ``intent = 0.7 u + sqrt(1 - 0.49) e`` (``e ~ N(0, 1)``; anonymous:
  ``e - 0.25``) and ``hesitation ~ N(0, 1)``.
* **Behaviour.** Session length is lognormal (median ~25 events, at most 400).
  Hesitation lengthens hovers (and makes them land on ``"price"``), zooms and the
  gaps between events, slows scrolling, and adds hovers, zooms, size-guide opens
  and cart removes. Intent adds product page views, clicks, zooms, searches,
  deeper scrolls, longer sessions and further cart adds.
* **Outcome.** A session adds to cart with probability ``sigmoid(-0.9 + 1.1 intent)``
  (never before its 8th event). A cart session abandons with probability
  ``Regime.logit`` through a sigmoid, ``b0 - a1 intent + a2 hesitation`` plus a
  small device term (:data:`DEVICE_EFFECT`); otherwise it ends in
  ``checkout_start`` and ``purchase`` (the last event, ``cart_value`` = order
  total). A quarter of the abandoners reach ``checkout_start`` first; the others
  just stop.
* **Time.** Starts follow a weekday and hour-of-day profile (evening peak). A
  user's sessions are moved apart so they never overlap (30 min gap at least);
  no session lasts over 3 h and all end before the last day does.
* **Drift.** Sessions starting on day ``drift_day`` or later follow
  :data:`DRIFTED` instead of :data:`BASELINE`: 80 % mobile, scrolls 1.6x
  faster, and hesitation lowers abandonment instead of raising it, at about the
  same abandonment rate.

Examples
--------
>>> from events.contract import ARROW_SCHEMA
>>> events, oracle = generate_events(GeneratorConfig(sessions=40, days=2, seed=7))
>>> events.schema.equals(ARROW_SCHEMA)
True
>>> oracle.num_rows, len(set(oracle.column("session_id").to_pylist()))
(40, 40)
>>> events.num_rows == sum(oracle.column("n_events").to_pylist())
True
>>> outcome = oracle.select(["added_to_cart", "purchased", "abandoned"]).to_pylist()
>>> all(r["added_to_cart"] == (r["purchased"] or r["abandoned"]) for r in outcome)
True
"""

from events.synth.config import ORACLE_SCHEMA, RELAXED_SCHEMA, GeneratedLog, GeneratorConfig
from events.synth.corruption import BAD_KINDS, BadKind
from events.synth.generate import generate_events
from events.synth.world import BASELINE, CONCEPT_DRIFTED, DEVICE_EFFECT, DRIFTED, Regime
from events.synth.writing import write_event_log

__all__ = [
    "BAD_KINDS",
    "BASELINE",
    "CONCEPT_DRIFTED",
    "DEVICE_EFFECT",
    "DRIFTED",
    "ORACLE_SCHEMA",
    "RELAXED_SCHEMA",
    "BadKind",
    "GeneratedLog",
    "GeneratorConfig",
    "Regime",
    "generate_events",
    "write_event_log",
]
