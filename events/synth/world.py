"""The simulated world's constants: event codes, regimes, and the coefficients of behaviour.

Every number that shapes a simulated visitor lives here, so the model of the
world reads in one place (see :mod:`events.synth` for what each one does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from events.contract import Device, EventType, PageType

# --------------------------------------------------------------------------- constants

DAY_MS = 86_400_000
#: No session lasts longer than this.
MAX_SESSION_MS = 3 * 3_600_000
#: Two sessions of the same user are at least this far apart (the usual sessionization gap).
MIN_SESSION_GAP_MS = 30 * 60_000
#: Longest session, in events.
MAX_EVENTS = 400
#: A user has at most this many sessions per day of the log.
MAX_SESSIONS_PER_USER_DAY = 6

TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
PAGES: tuple[str, ...] = tuple(p.value for p in PageType)
DEVICES: tuple[str, ...] = tuple(d.value for d in Device)
BROWSERS: tuple[str, ...] = ("chrome", "safari", "edge", "firefox", "samsung_internet", "opera")

# Integer codes of event types and page types in the generator's arrays.
_T = {t: i for i, t in enumerate(EventType)}
PAGE_VIEW, HOVER, SCROLL = _T[EventType.PAGE_VIEW], _T[EventType.HOVER], _T[EventType.SCROLL]
CLICK, ZOOM, SEARCH = _T[EventType.CLICK], _T[EventType.IMAGE_ZOOM], _T[EventType.SEARCH]
SIZE_GUIDE = _T[EventType.SIZE_GUIDE_OPEN]
ADD, REMOVE = _T[EventType.ADD_TO_CART], _T[EventType.REMOVE_FROM_CART]
CHECKOUT, PURCHASE = _T[EventType.CHECKOUT_START], _T[EventType.PURCHASE]

_P = {p: i for i, p in enumerate(PageType)}
HOME, CATEGORY, PRODUCT = _P[PageType.HOME], _P[PageType.CATEGORY], _P[PageType.PRODUCT]
SEARCH_PAGE, CART_PAGE, CHECKOUT_PAGE = (
    _P[PageType.SEARCH],
    _P[PageType.CART],
    _P[PageType.CHECKOUT],
)

_NO = -np.inf


@dataclass(frozen=True)
class Regime:
    """Constants of one regime of the simulated world (before or after drift).

    Attributes
    ----------
    device_mix:
        Probabilities of ``desktop``, ``mobile``, ``tablet`` (the order of :data:`DEVICES`).
    velocity_scale:
        Multiplier of every ``scroll_velocity``.
    b0, a1, a2:
        The true abandonment probability of a cart session is
        ``sigmoid(b0 - a1 * intent + a2 * hesitation + DEVICE_EFFECT[device])``.
    """

    device_mix: tuple[float, float, float]
    velocity_scale: float
    b0: float
    a1: float
    a2: float

    def logit(self, intent: np.ndarray, hesitation: np.ndarray, device: np.ndarray) -> np.ndarray:
        """True abandonment log-odds for sessions with these latents and device codes."""
        effect = np.asarray(DEVICE_EFFECT)[device]
        return self.b0 - self.a1 * intent + self.a2 * hesitation + effect


#: Additive abandonment log-odds by device (desktop, mobile, tablet).
DEVICE_EFFECT: tuple[float, float, float] = (0.0, 0.25, 0.1)
#: The world before drift.
BASELINE = Regime(device_mix=(0.38, 0.55, 0.07), velocity_scale=1.0, b0=1.35, a1=0.9, a2=1.35)
#: The world from ``drift_day`` on: mostly mobile, faster scrolling, and hesitation no
#: longer predicts abandonment the same way (its effect flips sign).
DRIFTED = Regime(device_mix=(0.15, 0.80, 0.05), velocity_scale=1.6, b0=1.2, a1=0.9, a2=-0.675)
#: Concept drift only: behaviour (devices, scrolling) as in :data:`BASELINE`, the
#: abandonment link as in :data:`DRIFTED`.
CONCEPT_DRIFTED = Regime(
    device_mix=BASELINE.device_mix,
    velocity_scale=BASELINE.velocity_scale,
    b0=DRIFTED.b0,
    a1=DRIFTED.a1,
    a2=DRIFTED.a2,
)

# Latent structure.
_RHO_USER = 0.7  # correlation of session intent with the user's trait
_ANON_INTENT = -0.25  # anonymous visitors buy a little less
_CART_B = (-0.9, 1.1)  # add-to-cart log-odds: b0 + b1 * intent
_CHECKOUT_ABANDON = 0.25  # share of abandoners who reach checkout_start
_CONSENT = 0.9

# Session length: lognormal events, median ~25.
_LEN_MU, _LEN_Z, _LEN_H, _LEN_SIGMA = math.log(25.0), 0.45, 0.1, 0.75
_CART_MIN_EVENTS = 14
_FIRST_ADD_MIN = 8

# Hour-of-day weights (UTC taken as local time): quiet nights, evening peak.
_HOURLY = np.array(
    [0.6, 0.4, 0.3, 0.25, 0.25, 0.35, 0.6, 0.9, 1.1, 1.2, 1.3, 1.35,
     1.5, 1.4, 1.3, 1.3, 1.4, 1.6, 1.9, 2.2, 2.4, 2.3, 1.8, 1.1]
)  # fmt: skip
_WEEKDAY = np.array([1.0, 1.0, 1.0, 1.0, 0.95, 1.1, 1.15])

# Page-view page types: landing page, and later page views (before intent terms).
_LANDING = np.array([0.6, 0.4, 0.3, -0.3, _NO, _NO, -3.0, -2.5])
_NEXT_PAGE = np.array([-0.3, 0.6, 0.9, -0.1, -2.2, _NO, -2.5, -2.8])
_PV_B = (-1.55, 0.25)  # page-view share log-odds: b0 + b1 * intent

# Non-page-view event types by page: hover, scroll, click, image_zoom, size_guide, search.
_BROWSE_TYPES = np.array([HOVER, SCROLL, CLICK, ZOOM, SIZE_GUIDE, SEARCH], dtype=np.int8)
_BROWSE_LOGITS = np.array(
    [
        [0.3, 1.0, 0.6, _NO, _NO, -0.2],  # home
        [0.6, 1.0, 0.7, _NO, _NO, -1.0],  # category
        [0.9, 0.8, 0.4, -0.4, -1.6, -2.5],  # product
        [0.4, 0.8, 0.7, _NO, _NO, 0.3],  # search
        [0.0, 0.3, 0.8, _NO, _NO, -2.5],  # cart
        [-0.5, 0.2, 0.8, _NO, _NO, _NO],  # checkout
        [-0.5, 0.5, 0.8, _NO, _NO, _NO],  # account
        [-0.5, 1.0, 0.5, _NO, _NO, -1.5],  # other
    ]
)
# Per-session shifts of those logits: columns times (hesitation, intent).
_BROWSE_H = np.array([0.4, 0.0, 0.0, 0.8, 1.0, 0.0])
_BROWSE_Z = np.array([-0.3, 0.0, 0.5, 0.5, 0.0, 0.3])
_ADD_B = (-2.8, 0.8)  # extra add_to_cart after the first: b0 + b1 * intent
_REMOVE_B = (-2.4, 1.1)  # remove_from_cart: b0 + b1 * hesitation

# Timing (ms).
_GAP_MU, _GAP_H, _GAP_SIGMA, _GAP_MIN, _GAP_MAX = math.log(5000.0), 0.4, 0.85, 150, 180_000
_HOVER_MU, _HOVER_H, _HOVER_SIGMA = math.log(650.0), 0.6, 0.5
_ZOOM_MU, _ZOOM_H, _ZOOM_SIGMA = math.log(1800.0), 0.4, 0.6
_GAP_Z = 0.2  # engaged visitors linger a little longer, too
_LAST_DWELL_MU, _LAST_DWELL_SIGMA = math.log(6000.0), 0.7
_CHECKOUT_GAP_MU, _PURCHASE_GAP_MU = math.log(8000.0), math.log(45_000.0)

# Scrolling: velocity px/s lognormal, slower with hesitation; depth ~ Beta.
_VEL_MU, _VEL_H, _VEL_SIGMA = math.log(1100.0), -0.5, 0.35
_VEL_DEVICE = np.log(np.array([1.0, 1.3, 1.15]))
_PRICE_MU, _PRICE_SIGMA, _PRICE_MIN = math.log(39.0), 0.7, 1.99

_BROWSER_MIX = np.array(
    [
        [0.62, 0.10, 0.14, 0.10, 0.00, 0.04],  # desktop
        [0.42, 0.50, 0.00, 0.01, 0.06, 0.01],  # mobile
        [0.30, 0.64, 0.02, 0.01, 0.03, 0.00],  # tablet
    ]
)

# Element ids, and the ones hovered / clicked on each page type (PAGES order).
ELEMENTS: tuple[str, ...] = (
    "price", "image", "title", "reviews", "description", "size_selector", "product_card",
    "nav", "banner", "filter", "sort", "search_result", "thumbnail", "color_swatch",
    "cart_item", "continue_shopping", "promo_code", "account_menu", "footer_link",
    "product_image", "size_guide", "search_box",
)  # fmt: skip
_E = {e: i for i, e in enumerate(ELEMENTS)}
_HOVER_ELEMENTS = (
    ("banner", "nav", "product_card"),
    ("product_card", "filter", "sort"),
    ("image", "title", "reviews", "description", "size_selector"),
    ("search_result", "filter"),
    ("cart_item", "promo_code"),
    ("promo_code", "continue_shopping"),
    ("account_menu", "nav"),
    ("footer_link", "nav"),
)
_CLICK_ELEMENTS = (
    ("banner", "product_card", "nav"),
    ("product_card", "filter", "sort", "nav"),
    ("thumbnail", "color_swatch", "size_selector", "reviews"),
    ("search_result", "filter"),
    ("cart_item", "continue_shopping", "promo_code"),
    ("promo_code", "continue_shopping"),
    ("account_menu", "nav"),
    ("footer_link", "nav"),
)
_PRICE_HOVER_B = (-1.0, 0.8)  # on product pages: b0 + b1 * hesitation; elsewhere b0 - 1
