"""Every microtune feature, declared once.

This file is the single place where a feature's name, meaning and computation
live. Everything else derives from it:

* ``definitions.py`` builds the Feast feature views, the on-demand view and the
  feature services from these lists;
* the batch builder (``features/build.py``) scans the folds over raw events;
* the live event route folds one event at a time with the same folds;
* training and serving read features only through the feature services.

To add a feature, add one entry to the right list (see ``docs/features.md``).

Examples
--------
>>> [f.name for f in SESSION_FOLDS][:3]
['event_count', 'page_views', 'product_views']
>>> context = session_context({
...     "session_start_ts": [100.0], "last_event_ts": [160.0], "click_count": [3.0],
...     "request_ts": [220.0], "device": ["mobile"], "page_type": ["product"]})
>>> context["session_age_s"], context["clicks_per_min"], context["is_mobile"]
([120.0], [1.5], [1])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from folds import (
    Count,
    Dwell,
    Ewm,
    First,
    Fold,
    Last,
    LogMean,
    LogTerm,
    Match,
    Max,
    Mean,
    Rate,
    Sum,
)

# ---------------------------------------------------------------------------
# Names of the Feast objects, declared once: definitions.py builds the objects
# under them, and every other stage imports them from here.

#: Join keys: the event contract's session and user ids.
SESSION_KEY = "session_id"
USER_KEY = "user_id"
#: Feature views.
SESSION_VIEW = "session_behaviour"
USER_VIEW = "user_history"
#: The feature service of the abandonment-risk models.
ABANDONMENT_SERVICE = "abandonment_v1"

# ---------------------------------------------------------------------------
# Session behaviour: folds over a session's consented events

#: The terms of ``hesitation_score``. A hesitant visitor hovers and zooms longer and
#: scrolls slower. Centres are typical values and scales the spreads of the logs
#: (median and standard deviation of the log on a generated week before drift:
#: hovers 780 ms and 0.76, image zooms 2,270 ms and 0.71, scrolls 1,320 px/s and
#: 0.61), so every event moves the score on one scale. The model sees one pooled
#: signal instead of three noisy means that it would have to weigh by their
#: counts; pooling them measured better than the separate means (docs/models.md).
_SLOWNESS: tuple[LogTerm, ...] = (
    LogTerm("duration_ms", Match(types=("hover",)), center=780.0, scale=0.76),
    LogTerm("duration_ms", Match(types=("image_zoom",)), center=2270.0, scale=0.71),
    LogTerm("scroll_velocity", Match(types=("scroll",)), center=1320.0, scale=-0.61),
)

SESSION_FOLDS: tuple[Fold, ...] = (
    Count("event_count", "Events in the session so far."),
    Count("page_views", "Page views so far.", Match(types=("page_view",))),
    Count(
        "product_views",
        "Product page views so far.",
        Match(types=("page_view",), pages=("product",)),
    ),
    Dwell("product_dwell_s", "Seconds on product pages (gaps capped at 300 s).", page="product"),
    Count("hover_count", "Hover events so far.", Match(types=("hover",))),
    Count(
        "price_hover_count",
        "Hovers on the price element so far.",
        Match(types=("hover",), elements=("price",)),
    ),
    Ewm(
        "hover_ms_ewm",
        "Exponentially smoothed hover duration in ms (alpha 0.3).",
        field="duration_ms",
        match=Match(types=("hover",)),
        alpha=0.3,
    ),
    Mean(
        "hover_ms_mean",
        "Mean hover duration in ms so far.",
        field="duration_ms",
        match=Match(types=("hover",)),
    ),
    Count("scroll_count", "Scroll events so far.", Match(types=("scroll",))),
    Ewm(
        "scroll_velocity_ewm",
        "Exponentially smoothed scroll speed in px/s (alpha 0.3).",
        field="scroll_velocity",
        match=Match(types=("scroll",)),
        alpha=0.3,
    ),
    Mean(
        "scroll_velocity_mean",
        "Mean scroll speed in px/s so far.",
        field="scroll_velocity",
        match=Match(types=("scroll",)),
    ),
    Max(
        "max_scroll_depth",
        "Deepest scroll so far, as a fraction of the page.",
        field="scroll_depth",
        match=Match(types=("scroll",)),
    ),
    LogMean(
        "hesitation_score",
        "Slowness so far: the mean standardized log of hover and image-zoom durations and "
        "of scroll speeds (reversed), shrunk towards 0 by one pseudo-event.",
        terms=_SLOWNESS,
        prior=1.0,
    ),
    Count("click_count", "Clicks so far.", Match(types=("click",))),
    Count("image_zooms", "Image zooms so far.", Match(types=("image_zoom",))),
    Count("size_guide_opens", "Size-guide opens so far.", Match(types=("size_guide_open",))),
    Count("searches", "Searches so far.", Match(types=("search",))),
    Count("cart_adds", "Add-to-cart events so far.", Match(types=("add_to_cart",))),
    Count("cart_removes", "Remove-from-cart events so far.", Match(types=("remove_from_cart",))),
    Sum(
        "cart_value",
        "Net value added to the cart (adds minus removes).",
        field="cart_value",
        weights=(("add_to_cart", 1.0), ("remove_from_cart", -1.0)),
    ),
    Count("checkout_starts", "Checkout starts so far.", Match(types=("checkout_start",))),
    First("session_start_ts", "Time of the session's first event (epoch seconds).", field="ts"),
    Last("last_event_ts", "Time of the session's latest event (epoch seconds).", field="ts"),
)

# ---------------------------------------------------------------------------
# User history: folds over the user's ended sessions (see features/build.py)

USER_FOLDS: tuple[Fold, ...] = (
    Count("past_sessions", "Ended sessions of the user before now."),
    Rate(
        "past_purchase_rate",
        "Share of the user's ended sessions with a purchase.",
        numerator="purchased",
    ),
    Rate(
        "past_abandon_rate",
        "Share of the user's cart sessions that were abandoned.",
        numerator="abandoned",
        denominator="added_to_cart",
    ),
)

# ---------------------------------------------------------------------------
# Request-time context: computed when a decision is made, from stored session
# features and the request (on-demand feature view, python mode).


@dataclass(frozen=True)
class Derived:
    """A feature computed at decision time; ``dtype`` is ``float`` or ``int``."""

    name: str
    dtype: str
    description: str


#: Inputs the request carries at decision time.
REQUEST_FIELDS: tuple[Derived, ...] = (
    Derived("request_ts", "float", "Decision time (epoch seconds)."),
    Derived("device", "str", "Device class of the request."),
    Derived("page_type", "str", "Page the visitor is on."),
)
#: Stored session features the context uses.
CONTEXT_INPUTS: tuple[str, ...] = ("session_start_ts", "last_event_ts", "click_count")

CONTEXT_FEATURES: tuple[Derived, ...] = (
    Derived("session_age_s", "float", "Seconds since the session's first event."),
    Derived("seconds_since_last_event", "float", "Seconds since the latest interaction."),
    Derived("clicks_per_min", "float", "Clicks per minute of session age (age at least 1 min)."),
    Derived("hour_of_day", "int", "UTC hour of the decision."),
    Derived("is_mobile", "int", "1 on a mobile device."),
    Derived("is_tablet", "int", "1 on a tablet."),
    Derived("on_product_page", "int", "1 when the visitor is on a product page."),
    Derived("on_checkout_page", "int", "1 on the cart or checkout page."),
)


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _context_row(
    start: float, last: float, clicks: float, now: float, device: Any, page: Any
) -> tuple[float, float, float, int, int, int, int, int]:
    age = now - start if not math.isnan(start) else float("nan")
    since = now - last if not math.isnan(last) else float("nan")
    minutes = max(age / 60.0, 1.0) if not math.isnan(age) else float("nan")
    cpm = (0.0 if math.isnan(clicks) else clicks) / minutes
    hour = datetime.fromtimestamp(now, UTC).hour if not math.isnan(now) else -1
    return (
        age,
        since,
        cpm,
        hour,
        int(device == "mobile"),
        int(device == "tablet"),
        int(page == "product"),
        int(page in ("cart", "checkout")),
    )


def session_context(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The on-demand context features, for a batch of rows (lists per column).

    Feast stores this function by value in its registry, without the module's
    globals, so it imports the implementation when it runs.
    """
    from feature_repo.features import context_features

    return context_features(inputs)


def context_features(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Context features computed from stored session features and the request."""
    rows = zip(
        map(_num, inputs["session_start_ts"]),
        map(_num, inputs["last_event_ts"]),
        map(_num, inputs["click_count"]),
        map(_num, inputs["request_ts"]),
        inputs["device"],
        inputs["page_type"],
        strict=True,
    )
    columns = list(zip(*(_context_row(*r) for r in rows), strict=True)) or [
        () for _ in CONTEXT_FEATURES
    ]
    return {f.name: list(col) for f, col in zip(CONTEXT_FEATURES, columns, strict=True)}


# ---------------------------------------------------------------------------
# What the abandonment models read, in column order. The feature service
# ``abandonment_v1`` is built from this list.

ABANDONMENT_SESSION_FEATURES: tuple[str, ...] = tuple(
    f.name for f in SESSION_FOLDS if f.name not in ("session_start_ts", "last_event_ts")
)
ABANDONMENT_USER_FEATURES: tuple[str, ...] = tuple(f.name for f in USER_FOLDS)
ABANDONMENT_CONTEXT_FEATURES: tuple[str, ...] = tuple(f.name for f in CONTEXT_FEATURES)


#: Features that move with the calendar, not with behaviour: the user history
#: grows as the log ages (a returning user has more past sessions every week),
#: and ``hour_of_day`` follows the hours a window covers (a 12-hour window never
#: matches a reference of whole days). The one declaration every drift check
#: reads: they are scored and reported, never counted towards data drift, and
#: judged on missing values only (``monitoring.drift``).
TREND_FEATURES: tuple[str, ...] = (*(f.name for f in USER_FOLDS), "hour_of_day")

# ---------------------------------------------------------------------------
# Micro-segments: the behaviour vector a session is clustered on, and the
# ``segment`` feature the fitted segmenter gives it (models/segments.py). The
# vector's formulas are in feature_repo/segment_vector.py.
#
# The vector reads the session features at any point of the session; the
# segment flow clusters the vectors of ended sessions, and the scorer assigns
# a live session with the same function and the registered segmenter. Each
# term reads a rate or a typical value, not a count, so that a session is
# placed by how it behaves rather than by how long it has run. Two groups:
# pace (hesitation_score, hover length, scroll speed, the gap between events)
# and focus (product-page share, product dwell, clicks and hovers per event).
# On generated data the first two principal components of these eight terms
# follow the world's hesitation (r 0.95) and intent (r 0.82); see
# docs/segments.md.

#: The segment feature view: each session's segment, offline after every event
#: (the segment flow) and online (the segment flow's batch assignment).
SEGMENT_VIEW = "session_segment"


@dataclass(frozen=True)
class SegmentTerm:
    """One coordinate of the behaviour vector, with the words its sign is named by."""

    name: str
    description: str
    high: str
    low: str


SEGMENT_TERMS: tuple[SegmentTerm, ...] = (
    SegmentTerm("hesitation", "hesitation_score as is.", "hesitant", "decisive"),
    SegmentTerm(
        "hover_ms_log",
        "Log of the mean hover in ms (no hover: 780 ms).",
        "long hovers",
        "brief hovers",
    ),
    SegmentTerm(
        "scroll_slowness",
        "Minus the log of the mean scroll speed in px/s (no scroll: 1,320 px/s).",
        "slow scrolls",
        "fast scrolls",
    ),
    SegmentTerm(
        "gap_s_log", "log1p of the mean seconds between events.", "long pauses", "quick pace"
    ),
    SegmentTerm("product_share", "Product views per page view.", "product-focused", "browsing"),
    SegmentTerm(
        "product_dwell_log",
        "log1p of the seconds on product pages.",
        "long product dwell",
        "little product time",
    ),
    SegmentTerm("click_rate", "Clicks per event.", "clicks a lot", "few clicks"),
    SegmentTerm("hover_rate", "Hovers per event.", "hovers a lot", "few hovers"),
)
#: The session features the vector reads.
SEGMENT_INPUTS: tuple[str, ...] = (
    "hesitation_score",
    "hover_ms_mean",
    "scroll_velocity_mean",
    "session_start_ts",
    "last_event_ts",
    "event_count",
    "product_views",
    "page_views",
    "product_dwell_s",
    "click_count",
    "hover_count",
)
SEGMENT = Derived(
    "segment",
    "int",
    "The session's micro-segment: the id of the registered segmenter's nearest centroid "
    "to its behaviour vector (-1 before any segmenter is registered).",
)
