"""Several `usercom serve` instances on one PostgreSQL queue (DELIVERY §7): the issue's figures.

Run: .venv/bin/python benchmarks/pg_instances.py [ingest|rate|takeover|claim|all]

- ingest: accepted events/s, 8 clients x 100-event /v1/batch requests, every 200 after a
  durable commit (fsync on), into one instance and into three (clients spread over them);
  delivery paused (the sandbox refuses the key), so ingest is measured alone.
- rate: against a sandbox limit R = 50 requests/s, no --rate: accepted requests/s and the
  share of 429s of 3 instances sharing one budget, next to 3 instances each learning alone
  (a SQLite ledger each: what rudder-server does), in the same run.
- takeover: seconds from SIGKILL of the instance holding the most lanes to its lanes
  delivering again on the others (--lease-ttl 5s).
- claim: ms per claim (`take` from the front, which gives back idle lanes and claims free
  ones) with 10k and with 1M queued events.

Starts a throwaway PostgreSQL from the distribution's server binaries (tests/pg_server.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
from _sandbox import sandbox_process
from _serve import API_KEY, WRITE_KEY, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_server import Server, throwaway_server

from pipeline.delivery.pg import PgLocation, open_reader_at
from pipeline.delivery.pg.ledger import Leasing, PgLedger

CLIENTS = 8
PER_BATCH = 100
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


@contextlib.contextmanager
def instance(folder: Path, base_url: str, ledger: str, *flags: str) -> Iterator[tuple[str, int]]:
    """One `usercom serve` on `ledger` (a URI, or a file); yields (url, pid)."""
    command = [
        sys.executable, "-m", "pipeline.cli", "serve", "--config", str(write_config(folder)),
        "--ledger", ledger, "--port", "0", "--write-key", WRITE_KEY, "--base-url", base_url,
        *flags,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the service did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip(), process.pid
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


def batches(requests: int, users: int, prefix: str = "m") -> list[bytes]:
    """Tracks of `users` users (ingest only: never delivered)."""
    made = []
    for r in range(requests):
        batch = [
            {
                "type": "track", "messageId": f"{prefix}-{r}-{i}",
                "userId": f"user-{(r * PER_BATCH + i) % users}", "event": "Product Viewed",
                "properties": {"sku": f"SKU-{i}", "position": r},
                "timestamp": "2024-05-01T10:00:00Z",
            }
            for i in range(PER_BATCH)
        ]  # fmt: skip
        made.append(json.dumps({"batch": batch}).encode())
    return made


def identifies(requests: int, prefix: str) -> list[bytes]:
    """Identifies of distinct users: one request each (update_or_create), one user each in
    the sandbox, so its users count what User.com accepted."""
    made = []
    for r in range(requests):
        batch = [
            {
                "type": "identify", "messageId": f"{prefix}-{r}-{i}",
                "userId": f"{prefix}-user-{r}-{i}", "traits": {"email": f"u{r}-{i}@x.io"},
            }
            for i in range(PER_BATCH)
        ]  # fmt: skip
        made.append(json.dumps({"batch": batch}).encode())
    return made


async def post_all(urls: list[str], payloads: list[bytes]) -> float:
    """Every payload with CLIENTS clients (client n posts to urls[n % len]); seconds taken."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)

    async def client(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=120) as http:
            while not queue.empty():
                answer = await http.post(
                    "/v1/batch",
                    content=queue.get_nowait(),
                    headers={"Content-Type": "application/json"},
                )
                if answer.status_code != 200:
                    raise RuntimeError(f"/v1/batch answered {answer.status_code}")

    started = time.perf_counter()
    await asyncio.gather(*(client(urls[n % len(urls)]) for n in range(CLIENTS)))
    return time.perf_counter() - started


def ingest(server: Server) -> None:
    for count in (1, 3):
        with (
            tempfile.TemporaryDirectory() as scratch,
            sandbox_process("--api-key", "not-the-service-key") as sandbox,
            contextlib.ExitStack() as stack,
        ):
            schema = f"bench_ingest_{count}"
            urls = [
                stack.enter_context(
                    instance(Path(scratch), sandbox, server.uri, "--pg-schema", schema)
                )[0]
                for _ in range(count)
            ]
            asyncio.run(post_all(urls, batches(20, 1000, "warm")))
            payloads = batches(400, 1000)
            seconds = asyncio.run(post_all(urls, payloads))
            rate = len(payloads) * PER_BATCH / seconds
            print(f"ingest, {count} instance(s): {rate:,.0f} accepted events/s (durable)")


def answers_of(where: PgLocation | Path) -> Counter[str]:
    seen: Counter[str] = Counter()
    with contextlib.closing(open_reader_at(where)) as book:
        for requests in book.request_logs():
            for text in requests:
                seen[text.rsplit("-> ", 1)[-1].split()[0]] += 1
    return seen


def rate(server: Server, seconds: float = 25.0) -> None:
    limit = 50
    for shared in (True, False):
        with (
            tempfile.TemporaryDirectory() as scratch,
            sandbox_process("--api-key", API_KEY, "--rate-limit", str(limit)) as sandbox,
            contextlib.ExitStack() as stack,
        ):
            folder = Path(scratch)
            schema = "bench_rate"
            ledgers: list[PgLocation | Path] = (
                [PgLocation(server.uri, schema)] * 3
                if shared
                else [folder / f"alone-{n}.sqlite" for n in range(3)]
            )
            urls = []
            for n, where in enumerate(ledgers):
                ledger = server.uri if shared else str(where)
                flags = ("--pg-schema", schema) if shared else ()
                sub = folder / f"i{n}"
                sub.mkdir()
                urls.append(stack.enter_context(instance(sub, sandbox, ledger, *flags))[0])
            # More than R can take in the window: the queue never runs dry.
            asyncio.run(post_all(urls, identifies(int(seconds * limit * 1.5 / PER_BATCH), "r")))
            time.sleep(3)  # past the start: the sustained rate is what counts
            before = len(httpx.get(f"{sandbox}/__sandbox__/state").json()["users"])
            time.sleep(seconds)
            after = len(httpx.get(f"{sandbox}/__sandbox__/state").json()["users"])
            seen: Counter[str] = Counter()
            for where in dict.fromkeys(ledgers):
                seen += answers_of(where)
        share = seen["429"] / max(1, sum(seen.values()))
        accepted = (after - before) / seconds
        name = "3 instances, one budget" if shared else "3 instances, each alone"
        print(
            f"rate, {name}: {accepted:.1f} accepted requests/s of R = {limit} "
            f"({accepted / limit:.0%}), 429s {share:.1%} of {sum(seen.values())} requests"
        )


def takeover(server: Server, ttl: float = 5.0) -> None:
    schema = "bench_takeover"
    where = PgLocation(server.uri, schema)
    with (
        tempfile.TemporaryDirectory() as scratch,
        sandbox_process("--api-key", API_KEY, "--rate-limit", "200") as sandbox,
        contextlib.ExitStack() as stack,
    ):
        flags = ("--pg-schema", schema, "--lease-ttl", f"{ttl}s")
        running = [
            stack.enter_context(instance(Path(scratch), sandbox, server.uri, *flags))
            for _ in range(3)
        ]
        asyncio.run(post_all([url for url, _ in running], identifies(40, "t")))
        time.sleep(2)
        with psycopg.connect(server.uri, autocommit=True) as db:
            owner, held = db.execute(
                f"SELECT owner, array_agg(lane) FROM {schema}.lanes WHERE owner IS NOT NULL "
                "GROUP BY owner ORDER BY count(*) DESC LIMIT 1"
            ).fetchone() or ("", [])
            pid = int(str(owner).split(":")[1])
            subprocess.run(["kill", "-KILL", str(pid)], check=True)
            killed_at = time.monotonic()
            count = (
                f"SELECT count(*) FROM {schema}.events WHERE lane = ANY(%s) "
                "AND status IN ('delivered', 'rejected')"
            )
            (start,) = db.execute(count, (held,)).fetchone() or (0,)
            while time.monotonic() - killed_at < 60:
                (now,) = db.execute(count, (held,)).fetchone() or (0,)
                if now > start:
                    break
                time.sleep(0.05)
        waited = time.monotonic() - killed_at
        print(
            f"takeover: {waited:.2f} s from SIGKILL to its lanes delivering again (TTL {ttl:.0f} s)"
        )
        del where


def claim(server: Server) -> None:
    for queued in (10_000, 1_000_000):
        schema = f"bench_claim_{queued}"
        where = PgLocation(server.uri, schema)
        PgLedger.open_pg_writer(where, "bench").close()
        lanes = min(queued // 10, 100_000)
        with psycopg.connect(server.uri, autocommit=True) as db:
            db.execute(f"SET search_path TO {schema}")
            db.execute(
                "INSERT INTO events (key, app, position, status, hash, line, lane) "
                "SELECT 'bench:' || n, 'bench', n, 'pending', 'h', '{}'::bytea, "
                "'user:' || (n %% %s) FROM generate_series(1, %s) AS n",
                (lanes, queued),
            )
            db.execute(
                "INSERT INTO lanes (app, lane) SELECT 'bench', 'user:' || n "
                "FROM generate_series(0, %s - 1) AS n",
                (lanes,),
            )
            db.execute("UPDATE apps SET top = %s", (queued,))
            db.execute("ANALYZE")
        writers = [
            PgLedger.open_pg_writer(where, "bench", Leasing(claim_every=0.0)) for _ in range(3)
        ]
        timings = []
        try:
            for round_ in range(30):
                writer = writers[round_ % 3]
                started = time.perf_counter()
                writer.take(0, 500)
                timings.append(time.perf_counter() - started)
        finally:
            for writer in writers:
                writer.close()
        timings.sort()
        print(
            f"claim with {queued:,} queued events over {lanes:,} lanes: "
            f"{1000 * timings[len(timings) // 2]:.1f} ms per claim (p50 of 30, 16 lanes and "
            f"a page of 500 events each), p90 {1000 * timings[int(0.9 * len(timings))]:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "what", nargs="?", default="all", choices=["ingest", "rate", "takeover", "claim", "all"]
    )
    args = parser.parse_args()
    with throwaway_server(durable=True) as server:
        for name, run in (
            ("ingest", ingest),
            ("rate", rate),
            ("takeover", takeover),
            ("claim", claim),
        ):
            if args.what in (name, "all"):
                run(server)


if __name__ == "__main__":
    main()
