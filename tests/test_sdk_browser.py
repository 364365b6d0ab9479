"""The tracker in a real browser: Debian's chromium, driven by Playwright.

The shop's page comes from a small HTTP server of the test's own on
``http://127.0.0.1:8799`` (an origin the served scorer allows; 8798 for one
it does not) and loads ``GET /sdk/microtune.js`` from the real scorer on
another port, which takes the events over real HTTP, cross-origin. Both on
loopback: Chromium keeps a page on a public origin from reaching a loopback
address at all (Private and Local Network Access), which a real shop and
scorer, both public, never meet. What
arrived is read back from the scorer's event inbox and its online features.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: The shop's origin (allowed by the served scorer's MICROTUNE_SERVE__CORS_ORIGINS).
SHOP = "http://127.0.0.1:8799"

PAGE = """<!doctype html><html><head><title>Shirt</title></head>
<body style="height: 4000px; margin: 0">
  <h1 data-mt-track="title">Linen shirt</h1>
  <div id="price" data-mt-track="price" style="width: 300px; height: 80px">59.90</div>
  <img id="photo" data-mt-zoom="photo-1" alt="" style="display: block; width: 120px; height: 120px">
  <button id="guide" data-mt-size-guide="size-guide">Size guide</button>
  <button id="add" data-mt-cart-add="add" data-mt-value="59.9">Add to cart</button>
  <script src="{api}/sdk/microtune.js" data-endpoint="{api}" data-page-type="product"></script>
</body></html>"""


@contextlib.contextmanager
def _site(port: int, html: bytes) -> Iterator[None]:
    """An HTTP server on 127.0.0.1:``port`` answering every GET with ``html``."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def shop(browser: Any, served: tuple[Settings, str]) -> Iterator[Callable[..., Any]]:
    """A fresh browser context (its own storage) on the shop's page at ``origin``."""
    contexts: list[Any] = []
    html = PAGE.format(api=served[1]).encode()

    def open_page(origin: str = SHOP) -> Any:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{origin}/product.html")
        page.wait_for_function("window.microtune !== undefined")
        return page

    with _site(8799, html), _site(8798, html):
        yield open_page
        for c in contexts:
            c.close()


def _arrived(settings: Settings, session: str) -> list[dict[str, Any]]:
    return [
        r
        for f in sorted(settings.paths.live_inbox.rglob("*.jsonl"))
        for line in f.read_bytes().splitlines()
        if (r := orjson.loads(line))["session_id"] == session
    ]


def _sent(page: Any, timeout: float = 15.0) -> None:
    """Until the tracker's queue is empty (everything acknowledged)."""
    page.evaluate("microtune.flush()")
    page.wait_for_function("microtune.pending() === 0", timeout=timeout * 1000)


def test_hovers_scrolls_and_clicks_arrive_as_events_and_change_the_features(
    shop: Callable[..., Any], served: tuple[Settings, str]
) -> None:
    settings, url = served
    page = shop()
    page.evaluate(
        "microtune.init({flushMs: 300, userId: 'browser-user-1'}); microtune.consent(true)"
    )
    page.hover("#price")
    page.wait_for_timeout(400)
    page.mouse.move(600, 600)  # off the price: the hover ends, with its dwell
    page.mouse.wheel(0, 900)
    page.wait_for_timeout(600)
    for target in ("#photo", "#guide", "#add"):
        page.click(target)
    _sent(page)
    session = page.evaluate("microtune.sessionId()")
    events = _arrived(settings, session)
    by_type = {e["event_type"]: e for e in events}
    assert {"page_view", "hover", "scroll", "image_zoom", "size_guide_open", "add_to_cart"} <= set(
        by_type
    ), [e["event_type"] for e in events]
    assert by_type["hover"]["element_id"] == "price" and by_type["hover"]["duration_ms"] >= 350
    assert (
        0 < by_type["scroll"]["scroll_depth"] <= 1 and by_type["scroll"]["page_type"] == "product"
    )
    assert by_type["add_to_cart"]["cart_value"] == 59.9
    assert by_type["image_zoom"]["element_id"] == "photo-1"
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(e["user_id"].startswith("p_") and e["browser"] == "chrome" for e in events)
    # The scorer folded them into the session's online features.
    scored = httpx.post(f"{url}/v1/score", json={"session_id": session}).json()
    features = scored["features"]
    assert features["cart_adds"] == 1 and features["image_zooms"] == 1
    assert features["size_guide_opens"] == 1 and features["event_count"] >= len(events) - 1


def test_without_consent_nothing_is_kept_or_sent(shop: Callable[..., Any]) -> None:
    page = shop()
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/v1/" in r.url else None)
    page.hover("#price")
    page.click("#add")
    page.mouse.wheel(0, 600)
    page.wait_for_timeout(800)
    assert page.evaluate("microtune.pending()") == 0
    assert page.evaluate("localStorage.getItem('mt:queue')") is None
    assert sent == []


def test_a_network_failure_loses_nothing_and_sends_nothing_twice(
    shop: Callable[..., Any], served: tuple[Settings, str]
) -> None:
    settings, _ = served
    page = shop()
    page.evaluate("microtune.init({flushMs: 200}); microtune.consent(true)")
    _sent(page)
    failed: list[str] = []
    page.context.route(
        "**/v1/events", lambda route: (failed.append(route.request.url), route.abort())
    )
    made = page.evaluate(
        "[...Array(7).keys()].map(i => microtune.track('click', {element_id: 'b' + i}).event_id)"
    )
    page.evaluate("microtune.flush()")
    deadline = time.monotonic() + 10
    while not failed and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert failed and page.evaluate("microtune.pending()") == 7
    # Kept in localStorage too (written at most once a second), for the next page.
    page.wait_for_function("(JSON.parse(localStorage.getItem('mt:queue')) || []).length === 7")
    page.context.unroute("**/v1/events")
    page.wait_for_function("microtune.pending() === 0", timeout=20_000)  # the back-off retry
    ids = [e["event_id"] for e in _arrived(settings, page.evaluate("microtune.sessionId()"))]
    assert sorted(i for i in ids if i in made) == sorted(made)
    assert len(ids) == len(set(ids))


def test_the_last_batch_arrives_when_the_page_is_left(
    shop: Callable[..., Any], served: tuple[Settings, str]
) -> None:
    settings, _ = served
    page = shop()
    page.evaluate("microtune.init({flushMs: 600000, batchSize: 100}); microtune.consent(true)")
    made = page.evaluate(
        "[...Array(3).keys()].map(i => microtune.track('click', {element_id: 'l' + i}).event_id)"
    )
    session = page.evaluate("microtune.sessionId()")
    page.goto(f"{SHOP}/cart.html")  # pagehide: the queue goes as a beacon
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        arrived = {e["event_id"] for e in _arrived(settings, session)}
        if set(made) <= arrived:
            break
        time.sleep(0.2)
    assert set(made) <= arrived


def test_a_page_on_another_origin_is_refused(
    shop: Callable[..., Any], served: tuple[Settings, str]
) -> None:
    settings, _ = served
    page = shop("http://127.0.0.1:8798")
    tried: list[str] = []
    page.on("request", lambda r: tried.append(r.url) if "/v1/events" in r.url else None)
    page.evaluate("microtune.init({flushMs: 100}); microtune.consent(true)")
    page.click("#add")
    page.wait_for_timeout(1500)
    assert tried  # the browser did send them (a simple request: no preflight) ...
    assert _arrived(settings, page.evaluate("microtune.sessionId()")) == []  # ... refused
    # The page cannot read a refusal across origins: it keeps the events and backs off.
    assert page.evaluate("microtune.pending()") == 2
