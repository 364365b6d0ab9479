"""A small closed-loop HTTP/1.1 load generator (asyncio + uvloop, keep-alive sockets).

Each of ``concurrency`` connections sends a request, waits for the whole
response, records the latency and sends the next, for ``duration`` seconds
after a warm-up. It is run in its own process, pinned to its own core
(``taskset``), so that it does not share a core with the server.

    python bench/loadgen.py --url http://127.0.0.1:8000/v1/score --body-file req.jsonl \\
        --concurrency 16 --duration 10

Bodies are taken round-robin from a JSON-lines file (one request body per
line). Prints one JSON object: requests, errors, status counts, rps, p50,
p90, p99 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlsplit


def _request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    warm_until: float,
    stop_at: float,
    lat: list[float],
    statuses: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            writer.write(requests[i % len(requests)])
            i += 1
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                status = 599  # the server dropped the connection: an error, reconnect
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            t1 = time.perf_counter()
            if t0 >= warm_until:
                lat.append(t1 - t0)
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run(
    url: str, bodies: list[bytes], concurrency: int, duration: float, warmup: float
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [_request(host, port, parts.path, b) for b in bodies]
    lat: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    warm_until, stop_at = start + warmup, start + warmup + duration
    await asyncio.gather(
        *(
            _worker(host, port, requests, k * 7919, warm_until, stop_at, lat, statuses)
            for k in range(concurrency)
        )
    )
    lat.sort()
    n = len(lat)

    def q(p: float) -> float:
        return lat[min(n - 1, int(p * n))] * 1000 if n else float("nan")

    return {
        "requests": n,
        "errors": sum(v for k, v in statuses.items() if k >= 500),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},  # type: ignore[dict-item]
        "rps": n / duration,
        "p50_ms": q(0.50),
        "p90_ms": q(0.90),
        "p99_ms": q(0.99),
        "max_ms": lat[-1] * 1000 if n else float("nan"),
        "mean_ms": statistics.fmean(lat) * 1000 if n else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--body-file", required=True)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    args = ap.parse_args()
    with open(args.body_file, "rb") as f:
        bodies = [line.rstrip(b"\n") for line in f if line.strip()]
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    out = asyncio.run(run(args.url, bodies, args.concurrency, args.duration, args.warmup))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
