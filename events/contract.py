"""The event contract: what a micro-behaviour event is, field by field.

One definition serves every entry point. ``microtune ingest`` (files), the
``POST /v1/events`` route (live events), the scoring route's ids and the
generator all use the field table below, so an event accepted in one place is
accepted everywhere, and a session id that can be written can be scored.
:mod:`events.validation` checks rows against it.

Every field says what a sensible value is:

* **Ids** (``event_id``, ``session_id``, ``user_id``): 1 to 64 printable ASCII
  characters, no space (:data:`ID_PATTERN`).
* **Times**: ISO 8601 (a naive time is UTC), or an epoch number whose
  magnitude says its unit (seconds below 1e11, milliseconds below 1e14; see
  :func:`events.validation.parse_ts`). A time must fall within a window:
  from :data:`EARLIEST` to :data:`MAX_FUTURE` ahead of now for batch ingest;
  the API takes only recent events (``MICROTUNE_SERVE__MAX_EVENT_AGE_HOURS``).
* **Numbers** have a physical range (``lo``, ``hi``): a hover of more than a
  day or a cart line of more than a million is a bug upstream, not behaviour.
* **Text** (``element_id``, ``browser``) must be printable: no control
  characters, no lone surrogates.

>>> FIELDS_BY_NAME["duration_ms"].hi
86400000.0
>>> import re
>>> [bool(re.fullmatch(ID_PATTERN, s)) for s in ("s-42", "../..", "   ", "a\\x00b", "é")]
[True, True, False, False, False]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import pyarrow as pa


class EventType(StrEnum):
    """Every event type the platform understands."""

    PAGE_VIEW = "page_view"
    HOVER = "hover"
    SCROLL = "scroll"
    CLICK = "click"
    IMAGE_ZOOM = "image_zoom"
    SIZE_GUIDE_OPEN = "size_guide_open"
    SEARCH = "search"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    CHECKOUT_START = "checkout_start"
    PURCHASE = "purchase"
    #: The front end showed a decision; ``element_id`` names the action shown.
    EXPOSURE = "exposure"


#: Event types that record what the site did, not what the visitor did: stored and
#: analysed (experiments), never folded into behaviour features, batch or live.
RECORD_ONLY_TYPES: frozenset[str] = frozenset({EventType.EXPOSURE.value})


class PageType(StrEnum):
    """Page context of an event."""

    HOME = "home"
    CATEGORY = "category"
    PRODUCT = "product"
    SEARCH = "search"
    CART = "cart"
    CHECKOUT = "checkout"
    ACCOUNT = "account"
    OTHER = "other"


class Device(StrEnum):
    """Device class of the visitor."""

    DESKTOP = "desktop"
    MOBILE = "mobile"
    TABLET = "tablet"


#: Events that add or remove value in the cart; they carry ``cart_value``.
CART_EVENTS = frozenset({EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART})
#: Events that end a cart session with a known outcome.
OUTCOME_EVENTS = frozenset({EventType.PURCHASE})

#: Longest id, in characters.
ID_MAX = 64
#: Every id: printable ASCII without space, 1 to :data:`ID_MAX` characters.
ID_PATTERN = rf"^[\x21-\x7e]{{1,{ID_MAX}}}$"
#: How far in the future an event time may be before it is rejected (clock skew).
MAX_FUTURE = timedelta(minutes=5)
#: The earliest event time batch ingest accepts: historical logs load, 1970 does not.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

Kind = Literal["id", "str", "ts", "enum", "float", "bool"]


@dataclass(frozen=True)
class FieldSpec:
    """One column of the event contract, with what a sensible value is."""

    name: str
    kind: Kind
    required: bool
    description: str
    max_len: int | None = None
    choices: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return {
            "id": pa.string(),
            "str": pa.string(),
            "enum": pa.string(),
            "ts": pa.timestamp("us", tz="UTC"),
            "float": pa.float64(),
            "bool": pa.bool_(),
        }[self.kind]


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(m.value for m in enum)


#: The contract, in storage order. Everything else derives from this table.
FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("event_id", "id", True, "Unique id of the event; duplicates are dropped.", ID_MAX),
    FieldSpec("session_id", "id", True, "Visit the event belongs to.", ID_MAX),
    FieldSpec("user_id", "id", False, "Pseudonymous visitor id, absent for anonymous.", ID_MAX),
    FieldSpec("ts", "ts", True, "Event time: ISO 8601, or epoch seconds or milliseconds."),
    FieldSpec("event_type", "enum", True, "What happened.", choices=_values(EventType)),
    FieldSpec("page_type", "enum", True, "Kind of page.", choices=_values(PageType)),
    FieldSpec("element_id", "str", False, "Element interacted with, e.g. 'price'.", 128),
    FieldSpec(
        "duration_ms",
        "float",
        False,
        "Hover, zoom or dwell time in ms (a day at most).",
        lo=0.0,
        hi=86_400_000.0,
    ),
    FieldSpec("scroll_depth", "float", False, "Fraction of page scrolled.", lo=0.0, hi=1.0),
    FieldSpec(
        "scroll_velocity",
        "float",
        False,
        "Scroll speed in px/s (100,000 at most).",
        lo=0.0,
        hi=100_000.0,
    ),
    FieldSpec(
        "cart_value",
        "float",
        False,
        "Value of the item added, removed or bought.",
        lo=0.0,
        hi=1_000_000.0,
    ),
    FieldSpec("device", "enum", True, "Device class.", choices=_values(Device)),
    FieldSpec("browser", "str", True, "Browser family.", 32),
    FieldSpec("consent", "bool", True, "Visitor allowed behavioural tracking."),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
FIELDS_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
#: Storage schema. Every column is nullable in storage: rows without consent are
#: minimized (see :data:`CONSENTLESS_FIELDS`); validation enforces ``required``.
ARROW_SCHEMA: pa.Schema = pa.schema([pa.field(f.name, f.arrow_type) for f in FIELDS])

#: Fields kept for events without consent; all others are nulled before storage.
CONSENTLESS_FIELDS: frozenset[str] = frozenset(
    {"event_id", "session_id", "ts", "event_type", "page_type", "consent"}
)


def minimize_row(row: dict[str, Any]) -> dict[str, Any]:
    """One row as :func:`minimize_unconsented` stores it.

    >>> minimize_row({"consent": False, "session_id": "s1", "cart_value": 3.0})["cart_value"]
    >>> minimize_row({"consent": True, "session_id": "s1", "cart_value": 3.0})["cart_value"]
    3.0
    """
    if row["consent"]:
        return row
    return {k: (v if k in CONSENTLESS_FIELDS else None) for k, v in row.items()}


def minimize_unconsented(table: pa.Table) -> pa.Table:
    """Null every field not in :data:`CONSENTLESS_FIELDS` for rows without consent."""
    consent = table.column("consent")
    arrays = []
    for f in FIELDS:
        col = table.column(f.name)
        if f.name not in CONSENTLESS_FIELDS:
            col = pa.compute.if_else(consent, col, pa.nulls(len(col), type=col.type))
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)
