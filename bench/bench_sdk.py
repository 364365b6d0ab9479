"""The browser tracker's cost, measured in Chromium against a real scorer.

    python bench/bench_sdk.py [--home DIR] [--loads 15] [--visit-s 30]

Needs Debian's ``chromium`` and Playwright (in the lock). Set-up: a trained
home (built as ``bench_serving`` builds one unless --home names one),
``microtune serve`` allowing the bench page's origin, and a small HTTP server
for two copies of one product page, with and without the tracker.

Printed, each beside its goal or baseline, measured in one run:

* the tracker's compressed and plain size (goal <= 5 KB compressed);
* its main-thread cost per captured event: synthetic hovers and clicks
  dispatched in the page, timed with ``performance.now()`` with the tracker
  (consent given) and without it, the difference divided by the events it
  captured (goal <= 0.1 ms);
* requests per minute of an active visitor: a scripted visitor who hovers,
  scrolls or clicks every 0.5 s for --visit-s seconds;
* page load (``loadEventEnd``) with and without the tracker, medians of
  --loads loads each, alternating.
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
from serving_setup import scorer_command, start, trained, wait_ready

PAGE_PORT, API_PORT = 18762, 18763
PAGE = """<!doctype html><html><head><title>Shirt</title></head>
<body style="height: 4000px">
  <h1 data-mt-track="title">Linen shirt</h1>
  <div id="price" data-mt-track="price" style="width: 300px; height: 80px">59.90</div>
  <button id="add" data-mt-cart-add="add" data-mt-value="59.9">Add to cart</button>
  {script}
</body></html>"""
SCRIPT = (
    f'<script src="http://127.0.0.1:{API_PORT}/sdk/microtune.js" '
    f'data-endpoint="http://127.0.0.1:{API_PORT}" data-page-type="product"></script>'
)
#: In-page: N hover pairs and N clicks on tracked elements, timed on the main thread.
DISPATCH = """n => {
  const price = document.getElementById('price'), add = document.getElementById('add');
  const before = window.microtune ? microtune.pending() : 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    price.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
    price.dispatchEvent(new MouseEvent('mouseout', {bubbles: true}));
    add.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  }
  const ms = performance.now() - t0;
  return {ms, captured: (window.microtune ? microtune.pending() : 0) - before};
}"""


def serve_pages() -> http.server.ThreadingHTTPServer:
    pages = {
        "/with.html": PAGE.format(script=SCRIPT).encode(),
        "/without.html": PAGE.format(script="").encode(),
    }

    class Pages(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.split("?")[0], b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", PAGE_PORT), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def size() -> dict[str, int]:
    url = f"http://127.0.0.1:{API_PORT}/sdk/microtune.js"
    with httpx.Client() as c:
        gz = c.get(url, headers={"Accept-Encoding": "gzip"})
        plain = c.get(url, headers={"Accept-Encoding": "identity"})
    return {"gzip": gz.num_bytes_downloaded, "plain": len(plain.content)}


def main_thread_cost(browser: Any, rounds: int = 5, n: int = 300) -> dict[str, float]:
    """Per captured event, ms: the tracker's page minus the bare page, same dispatches."""
    base = f"http://127.0.0.1:{PAGE_PORT}"
    per_event = []
    for _ in range(rounds):
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(f"{base}/without.html")
        bare = page.evaluate(DISPATCH, n)
        page.goto(f"{base}/with.html")
        page.wait_for_function("window.microtune !== undefined")
        page.evaluate("microtune.init({flushMs: 600000, batchSize: 100000, maxQueue: 100000})")
        page.evaluate("microtune.consent(true)")
        tracked = page.evaluate(DISPATCH, n)
        per_event.append((tracked["ms"] - bare["ms"]) / max(tracked["captured"], 1))
        ctx.close()
    return {"median_ms": statistics.median(per_event), "max_ms": max(per_event)}


def visitor_requests(browser: Any, seconds: float) -> dict[str, float]:
    """Requests per minute of a visitor acting every 0.5 s, with the tracker's defaults."""
    ctx = browser.new_context()
    page = ctx.new_page()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if "/v1/events" in r.url else None)
    page.goto(f"http://127.0.0.1:{PAGE_PORT}/with.html")
    page.wait_for_function("window.microtune !== undefined")
    page.evaluate("microtune.consent(true)")
    steps = int(seconds / 0.5)
    for i in range(steps):
        kind = i % 3
        if kind == 0:
            page.hover("#price")
        elif kind == 1:
            page.mouse.move(700, 700)
            page.mouse.wheel(0, 300)
        else:
            page.click("#add")
        page.wait_for_timeout(500)
    ctx.close()
    return {"requests": len(posts), "per_minute": len(posts) * 60.0 / seconds}


def page_loads(browser: Any, loads: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"with": [], "without": []}
    ctx = browser.new_context()
    page = ctx.new_page()
    for i in range(loads * 2):
        which = "with" if i % 2 == 0 else "without"
        page.goto(f"http://127.0.0.1:{PAGE_PORT}/{which}.html?i={i}", wait_until="load")
        t = page.evaluate(
            "performance.getEntriesByType('navigation')[0].loadEventEnd"
            " - performance.getEntriesByType('navigation')[0].startTime"
        )
        times[which].append(float(t))
    ctx.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="A home with promoted champions; built if missing.")
    ap.add_argument("--loads", type=int, default=15, help="Page loads per variant.")
    ap.add_argument("--visit-s", type=float, default=30.0, help="Length of the scripted visit.")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("needs Debian's chromium: apt-get install chromium")
    work = Path(tempfile.mkdtemp(prefix="mt-bench-sdk-"))
    home = trained(args.home, work)
    env = {
        **os.environ,
        "MICROTUNE_HOME": str(home),
        "MICROTUNE_PROFILE": "embedded",
        "MICROTUNE_SERVE__CORS_ORIGINS": f'["http://127.0.0.1:{PAGE_PORT}"]',
        "MICROTUNE_SERVE__RATE_LIMIT_EVENTS_PER_MIN": "0",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    proc = start(scorer_command(API_PORT), env, work / "serve.log")
    pages = serve_pages()
    try:
        wait_ready(f"http://127.0.0.1:{API_PORT}/readyz", proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            sz = size()
            cost = main_thread_cost(browser)
            visit = visitor_requests(browser, args.visit_s)
            load = page_loads(browser, args.loads)
            browser.close()
    finally:
        pages.shutdown()
        proc.terminate()
        proc.wait(timeout=60)
    print(f"size: {sz['gzip']:,} bytes gzip, {sz['plain']:,} plain (goal <= 5,120 gzip)")
    print(
        f"main-thread cost per captured event: median {cost['median_ms']:.4f} ms, "
        f"max {cost['max_ms']:.4f} ms over 5 rounds (goal <= 0.1 ms)"
    )
    print(
        f"active visitor (an action every 0.5 s for {args.visit_s:.0f} s): "
        f"{visit['requests']} requests = {visit['per_minute']:.1f} per minute"
    )
    print(
        f"page load (loadEventEnd, median of {args.loads}): {load['with']:.1f} ms with the "
        f"tracker, {load['without']:.1f} ms without ({load['with'] - load['without']:+.1f} ms)"
    )


if __name__ == "__main__":
    main()
