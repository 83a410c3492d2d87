"""End to end through `usercom serve`: the time from an ingest 200 to the event in the sandbox.

Run: .venv/bin/python benchmarks/serve_e2e.py [--seconds S] [--rate EPS] [--concurrency N]
The sandbox (its own process) answers every request after 20 ms and notes when each event
lands. 200 users are identified first (not measured); then tracks are posted at a steady
rate (default 200 events/s, batches of 10 every 50 ms, users round-robin) and each one's
latency is its landing time minus the time its 200 came back. Prints p50, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _serve import API_KEY, WRITE_KEY, serve_process

LATENCY_MS = 20.0
USERS = 200
PER_BATCH = 10
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


async def run(url: str, seconds: float, rate: float) -> dict[str, float]:
    """Post the steady load; the wall clock time each event's 200 came back, by seq."""
    acked: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as http:
        identifies = [
            {
                "type": "identify",
                "messageId": f"id-{n}",
                "userId": f"user-{n}",
                "traits": {"email": f"user-{n}@example.com"},
            }
            for n in range(USERS)
        ]
        answer = await http.post("/v1/batch", json={"batch": identifies})
        answer.raise_for_status()
        while (await http.get("/health")).json()["queued"]:
            await asyncio.sleep(0.1)

        async def send(first: int) -> None:
            batch = [
                {
                    "type": "track",
                    "messageId": f"t-{seq}",
                    "userId": f"user-{seq % USERS}",
                    "event": "Product Viewed",
                    "properties": {"seq": seq},
                    "timestamp": "2024-05-01T10:00:00Z",
                }
                for seq in range(first, first + PER_BATCH)
            ]
            answer = await http.post("/v1/batch", json={"batch": batch})
            answer.raise_for_status()
            now = time.time()
            for seq in range(first, first + PER_BATCH):
                acked[str(seq)] = now

        interval = PER_BATCH / rate
        started = time.monotonic()
        sending: list[asyncio.Task[None]] = []
        tick = 0
        while time.monotonic() - started < seconds:
            sending.append(asyncio.create_task(send(tick * PER_BATCH)))
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * interval - time.monotonic()))
        await asyncio.gather(*sending)
        while (await http.get("/health")).json()["queued"]:
            await asyncio.sleep(0.1)
    return acked


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    here = Path(__file__).parent
    sandbox = subprocess.Popen(
        [sys.executable, str(here / "_arrivals.py"), str(LATENCY_MS), API_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        base = sandbox.stdout.readline().rsplit(" ", 1)[-1].strip()
        with (
            tempfile.TemporaryDirectory() as scratch,
            serve_process(Path(scratch), base, "--concurrency", str(args.concurrency)) as (url, _),
        ):
            acked = asyncio.run(run(url, args.seconds, args.rate))
            arrivals: dict[str, float] = json.loads(httpx.get(f"{base}/__arrivals__").content)
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    latencies = [1000 * (arrivals[seq] - at) for seq, at in acked.items() if seq in arrivals]
    missing = len(acked) - len(latencies)
    print(
        f"sandbox latency {LATENCY_MS:.0f} ms, {args.rate:.0f} events/s for {args.seconds:.0f} s, "
        f"--concurrency {args.concurrency}: {len(acked)} events acknowledged, {missing} missing"
    )
    print(
        f"200 -> in the sandbox: p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
    )


if __name__ == "__main__":
    main()
