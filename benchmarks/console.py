"""The console's overview and failures pages over a ledger of 1M events (DELIVERY §8).

Run: .venv/bin/python benchmarks/console.py [--events N] [--problems SHARE] [--runs R]

Builds a ledger of N events (default 1,000,000) spread over the last 3 hours: delivered but
for SHARE (default 2%) failed, held and rejected ones, whose errors name one of 500 users (so
they fall into a few groups only once masked). Then serves it with a console (in-process,
starlette's TestClient, delivery paused: the sandbox refuses the key) and times GET
/console/, /console/failures and their /console/api/ twins, R runs each after one warm-up:
prints the median and the slowest run. Target: under 300 ms each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

from pipeline.delivery.ledger import Ledger
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.serve import ServeOptions, Service, ledger_paths
from pipeline.serve.options import parse_sources

API_KEY = "bench-console-key-0123456789abcdef0123456789abcdef0123456789abcdef01234567"
TOKEN = "bench-console-token"
CONFIG = {"apiKey": API_KEY, "appSubdomain": "acme"}
PAGES = ("/console/", "/console/failures", "/console/api/overview", "/console/api/failures")
ERRORS = {
    "rejected": "No user found with given lookup field: GET "
    "https://acme.user.com/api/public/users-by-id/{user}/ -> 404",
    "failed": "User.com failed (503) after 6 attempts in 30.{n} s",
    "held": "held: an earlier event of this user (acme:{user}-track-0) did not finish",
}


def build(path: Path, events: int, problems: float) -> None:
    """A ledger of `events` rows, written straight into its table (the schema, indexes and
    meta rows made by the ledger itself), as fast as SQLite takes them."""
    Ledger.open_writer(path, "acme").close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    now = time.time()
    draw = random.Random(17)
    statuses = ("rejected", "failed", "held")

    def rows() -> object:
        for position in range(1, events + 1):
            user = f"user-{draw.randrange(500)}"
            received = now - 3 * 3600 + 3 * 3600 * position / events
            status = statuses[position % 3] if draw.random() < problems else "delivered"
            error = ERRORS[status].format(user=user, n=position % 10) if status in ERRORS else None
            line = json.dumps(
                {"type": "track", "messageId": f"m{position}", "userId": user, "event": "Paid"}
            ).encode()
            requests = json.dumps(["POST https://acme.user.com/api/public/events/ -> 201"])
            yield (
                f"acme:m{position}",
                position,
                status,
                f"h{position}",
                line,
                1,
                requests,
                error,
                received + 0.05 + draw.random() * 0.2,
                received,
            )

    db.executemany(
        "INSERT INTO events (key, position, status, hash, line, attempts, requests, error, "
        "updated, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows(),  # type: ignore[arg-type]
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--problems", type=float, default=0.02)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="usercom-console-") as folder:
        ledger = Path(folder) / "acme.sqlite"
        started = time.perf_counter()
        build(ledger, args.events, args.problems)
        print(f"built {args.events} events in {time.perf_counter() - started:.1f} s")
        # The sandbox refuses the service's key: delivery stays paused and leaves the
        # unfinished events queued, so the pages are timed alone on the machine.
        with serve_in_thread(SandboxOptions(api_key="not-" + API_KEY)) as sandbox:
            sources = parse_sources(CONFIG, (), "bench")
            options = ServeOptions(
                sources=sources,
                ledgers=ledger_paths(ledger, tuple(sources.apps)),
                port=0,
                base_url=sandbox,
            )
            options = dataclasses.replace(options, console_token=TOKEN)
            service = Service.open(options)
            with TestClient(service.app) as client:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                for page in PAGES:
                    assert client.get(page, headers=headers).status_code == 200, page
                    times = []
                    for _ in range(args.runs):
                        start = time.perf_counter()
                        answer = client.get(page, headers=headers)
                        times.append(time.perf_counter() - start)
                        assert answer.status_code == 200
                    print(
                        f"{page:28} median {statistics.median(times) * 1000:6.0f} ms   "
                        f"slowest {max(times) * 1000:6.0f} ms"
                    )


if __name__ == "__main__":
    main()
