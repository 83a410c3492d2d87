"""Ingest of `usercom serve`: 8 concurrent clients posting /v1/batch with 100 events each.

Run: .venv/bin/python benchmarks/serve_ingest.py [--requests N] [--delivery]
Prints accepted events/s and the p50/p99 answer latency of /v1/batch (every 200 is sent after
a durable commit: group commit, synchronous=FULL), next to the same server answering GET /health
(no body, no ledger) with the same 8 clients in the same run. Without --delivery the sandbox
refuses the service's key, so delivery stays paused and ingest is measured alone; with it,
delivery drains the queue into the sandbox meanwhile (same machine, competing for the CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from _sandbox import sandbox_process
from _serve import API_KEY, WRITE_KEY, serve_process

CLIENTS = 8
EVENTS_PER_BATCH = 100
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


def bodies(requests: int) -> list[bytes]:
    """`requests` batches of 100 distinct tracks (1,000 users), serialized up front."""
    made = []
    for r in range(requests):
        batch = [
            {
                "type": "track",
                "messageId": f"m-{r}-{i}",
                "userId": f"user-{(r * EVENTS_PER_BATCH + i) % 1000}",
                "event": "Product Viewed",
                "properties": {"sku": f"SKU-{i}", "price": 10 + i, "position": r},
                "timestamp": "2024-05-01T10:00:00Z",
                "context": {"library": {"name": "analytics-python", "version": "2.1"}},
            }
            for i in range(EVENTS_PER_BATCH)
        ]
        made.append(json.dumps({"batch": batch}).encode())
    return made


async def load(
    url: str, method: str, path: str, payloads: list[bytes | None]
) -> tuple[float, list[float]]:
    """Send every payload with CLIENTS concurrent clients; (seconds, latencies)."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    latencies: list[float] = []

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as http:
            while not queue.empty():
                payload = queue.get_nowait()
                started = time.perf_counter()
                answer = await http.request(
                    method,
                    path,
                    content=payload,
                    headers={"Content-Type": "application/json"} if payload else None,
                )
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return time.perf_counter() - started, latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--delivery", action="store_true")
    args = parser.parse_args()
    payloads: list[bytes | None] = list(bodies(args.requests))
    key = API_KEY if args.delivery else "not-the-service-key"
    with (
        tempfile.TemporaryDirectory() as scratch,
        sandbox_process("--api-key", key) as sandbox,
        serve_process(Path(scratch), sandbox) as (url, _),
    ):
        asyncio.run(load(url, "GET", "/health", [None] * 200))  # warm up both paths
        asyncio.run(load(url, "POST", "/v1/batch", payloads[:20]))
        empty_s, empty = asyncio.run(load(url, "GET", "/health", [None] * args.requests))
        ingest_s, ingest = asyncio.run(load(url, "POST", "/v1/batch", payloads[20:]))
        health = httpx.get(f"{url}/health").json()
    events = (len(payloads) - 20) * EVENTS_PER_BATCH
    print(f"clients: {CLIENTS}, {EVENTS_PER_BATCH} events per /v1/batch request")
    print(f"delivery: {'on (sandbox, no latency)' if args.delivery else 'paused (key refused)'}")
    for name, seconds, latencies in (
        ("GET /health", empty_s, empty),
        ("POST /v1/batch", ingest_s, ingest),
    ):
        p50 = 1000 * statistics.median(latencies)
        p99 = 1000 * percentile(latencies, 0.99)
        rate = len(latencies) / seconds
        print(f"{name:15} {rate:7.0f} requests/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    print(f"accepted events/s: {events / ingest_s:,.0f} (target >= 5,000)")
    print(f"queued at the end: {health['queued']}")


if __name__ == "__main__":
    main()
