"""Rate limits per client, and slow or idle clients cut off: real uvicorn over real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_harness import Server

from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty home's scorer with small limits, a trusted proxy and an API key."""
    settings = Settings(
        home=tmp_path_factory.mktemp("limits") / "home",
        serve={
            "rate_limit_score_per_min": 5,
            "rate_limit_events_per_min": 2,
            "trusted_proxies": ["127.0.0.1/32"],
            "api_keys": ["shop-key"],
            "read_timeout_s": 1.0,
            "keep_alive_s": 1,
        },
    )
    with Server(settings) as server:
        yield server.url


def _score(url: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/score", json={"session_id": "lim"}, headers=headers, timeout=10)


def test_a_client_over_its_rate_gets_429_and_others_do_not(limited: str) -> None:
    # The proxy's own address is a client too (nothing forwarded).
    codes = [_score(limited).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    over = _score(limited)
    assert over.status_code == 429 and 1 <= int(over.headers["retry-after"]) <= 60
    assert "rate limit" in over.json()["detail"]
    # A second client behind the trusted proxy, and a shop's server with its key.
    assert _score(limited, **{"x-forwarded-for": "10.0.0.2, 127.0.0.1"}).status_code == 200
    assert _score(limited, **{"x-api-key": "shop-key"}).status_code == 200
    # An unknown key is no identity: the request counts for its address.
    assert _score(limited, **{"x-api-key": "guess"}).status_code == 429
    # Each route has its own budget.
    event = httpx.post(f"{limited}/v1/events", json={"events": [{}]}, timeout=10)
    assert event.status_code == 200


def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", serve={"rate_limit_score_per_min": 2})
    with Server(settings) as server:
        spoofed = [_score(server.url, **{"x-forwarded-for": f"10.0.0.{i}"}) for i in range(3)]
    assert [r.status_code for r in spoofed] == [200, 200, 429]


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closes ``sock`` (None if it is still open after ``seconds``)."""
    sock.settimeout(0.2)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    return None


def test_a_stalled_request_is_cut_off(limited: str) -> None:
    host, port = limited.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"events": ['
        )
        waited = _closed_within(sock, 5.0)
    assert waited is not None and waited < 3.0, waited  # deadline 1 s
    # Stalled in the headers, too.
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nhost: x\r\n")
        waited = _closed_within(sock, 5.0)
    assert waited is not None and waited < 3.0, waited


def test_an_idle_keep_alive_connection_is_closed(limited: str) -> None:
    host, port = limited.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        waited = _closed_within(sock, 5.0)
    assert waited is not None and waited < 3.0, waited  # keep-alive 1 s
