"""The demo storefront in a real browser: from the page to a decision shown on it.

Debian's chromium (Playwright) opens ``/demo/`` on the real scorer, which
serves the shop, the SDK and the API from one origin. The visitor accepts
the consent banner, browses, and the SDK's decision applier asks
``POST /v1/score`` on its own; the policy in force is the test's (one rule
per decision, every session treated), so the expected decision is known.

``MICROTUNE_SCREENSHOT=docs/img/storefront.png`` saves the page with the
decision shown (the picture in ``docs/sdk.md``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from serving_harness import policy_in_force

from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

POLICY = """
experiment: {variants: {all: {weight: 1}}}
guard_rails: {cooldown_seconds: 0}
rules:
  - name: zoomer
    when: {"feature:image_zooms": {gte: 2}}
    action: highlight_size_guide
  - name: cart-discount
    when: {all: [{"context:page_type": {eq: cart}}, {"feature:cart_value": {gt: 0}}]}
    action: show_discount_popup
    params: {percent: 15, ttl_s: 600}
"""


@pytest.fixture
def shop(browser: Any, served: tuple[Settings, str]) -> Iterator[Any]:
    """A fresh browser context on the storefront, with the test's policy in force."""
    settings, url = served
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    with policy_in_force(settings, url, POLICY):
        yield context
    context.close()


def _arrived(settings: Settings, session: str, until: set[str], timeout: float = 15) -> list:
    """The session's events in the scorer's inbox, once every type of ``until`` is there."""
    deadline = time.monotonic() + timeout
    while True:
        events = [
            r
            for f in sorted(settings.paths.live_inbox.rglob("*.jsonl"))
            for line in f.read_bytes().splitlines()
            if (r := orjson.loads(line))["session_id"] == session
        ]
        if until <= {e["event_type"] for e in events} or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def _open(context: Any, url: str, path: str) -> Any:
    page = context.new_page()
    page.goto(f"{url}/demo/{path}")
    page.wait_for_function("window.microtune !== undefined")
    return page


def test_browsing_the_shop_brings_a_decision_the_page_shows(
    shop: Any, served: tuple[Settings, str]
) -> None:
    settings, url = served
    page = _open(shop, url, "product.html?p=linen-shirt")
    page.click("#accept")  # the consent banner: nothing went before this
    page.hover("#price")
    page.wait_for_timeout(300)
    page.mouse.move(1000, 700)
    page.mouse.wheel(0, 400)
    page.wait_for_timeout(500)
    page.click("#photo")  # zoom in, and out
    page.click("#photo")
    for _ in range(4):
        page.click("h1")
    # Eight events in: the SDK flushes them, asks for a decision and shows it.
    guide = page.wait_for_selector('#size-guide[data-mt-action="highlight_size_guide"]')
    assert guide is not None and guide.is_visible()
    session = page.evaluate("microtune.sessionId()")
    page.evaluate("microtune.flush()")
    events = _arrived(settings, session, {"exposure"})
    kinds = [e["event_type"] for e in events]
    assert kinds.count("image_zoom") == 2 and kinds.count("exposure") == 1, kinds
    assert {"page_view", "hover", "scroll", "click"} <= set(kinds)
    assert all(e["page_type"] == "product" and e["consent"] for e in events)
    exposure = next(e for e in events if e["event_type"] == "exposure")
    assert exposure["element_id"] == "highlight_size_guide"
    hovers = {e["element_id"]: e["duration_ms"] for e in events if e["event_type"] == "hover"}
    assert hovers["price"] >= 250, hovers
    features = httpx.post(f"{url}/v1/score", json={"session_id": session}).json()["features"]
    assert features["image_zooms"] == 2 and features["size_guide_opens"] == 0


def test_the_cart_page_asks_and_the_discount_holds_at_checkout(
    shop: Any, served: tuple[Settings, str]
) -> None:
    settings, url = served
    page = _open(shop, url, "product.html?p=linen-shirt")
    page.click("#accept")
    page.click("#add")
    page.click("text=Cart")
    banner = page.wait_for_selector('.banner[data-mt-action="show_discount_popup"]')
    assert banner is not None and "15% off" in banner.inner_text()
    if shot := os.environ.get("MICROTUNE_SCREENSHOT"):
        page.screenshot(path=shot, clip={"x": 0, "y": 0, "width": 1100, "height": 400})
    page.click("#to-checkout")
    # Shown on an earlier page of the session: shown again, without a second exposure.
    page.wait_for_selector('.banner[data-mt-action="show_discount_popup"]')
    due = float(page.inner_text("#due").removesuffix(" EUR"))
    assert due == 50.92  # 59.90 less 15%: 50.915, to the cent
    page.fill("input[name=name]", "A. Visitor")
    page.click("#place")
    page.wait_for_selector("#thanks")
    session = page.evaluate("microtune.sessionId()")
    events = _arrived(settings, session, {"purchase"})
    kinds = [e["event_type"] for e in events]
    assert kinds.count("exposure") == 1 and kinds.count("add_to_cart") == 1, kinds
    assert {"checkout_start", "purchase"} <= set(kinds)
    purchase = next(e for e in events if e["event_type"] == "purchase")
    assert purchase["cart_value"] == due and purchase["page_type"] == "checkout"
    by_page = {e["page_type"] for e in events}
    assert by_page == {"product", "cart", "checkout"}


def test_the_storefront_can_be_turned_off() -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app

    settings = Settings(serve={"storefront": False})
    with TestClient(create_app(settings)) as off:
        assert off.get("/demo/").status_code == 404
    with TestClient(create_app(Settings())) as on:
        shop = on.get("/demo/")
        assert shop.status_code == 200 and "/sdk/microtune.js" in shop.text
