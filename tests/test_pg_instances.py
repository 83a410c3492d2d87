"""Three `usercom serve` processes on one PostgreSQL queue in front of a sandbox process with
a rate limit, over real sockets (DELIVERY §7): one of them is SIGKILLed mid-stream. Nothing
acknowledged is lost, each user's events land in order, duplicates stay within the bound (a
write in flight per lane the killed one held), no user is created twice, and the instances
together keep to the limit (at most 3% of requests answered 429)."""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from pathlib import Path

import psycopg
from e2e_helpers import sandbox_process
from pg_server import Server
from serve_helpers import (
    API_KEY,
    identify,
    post,
    sandbox_state,
    service_process,
    track,
    tracks_by_user,
    wait_until,
    write_config,
)

from pipeline.delivery.pg import PgLocation, open_reader_at

USERS = 30
TRACKS = 10
RATE_LIMIT = 50
CONCURRENCY = 4


def counts(where: PgLocation) -> dict[str, int]:
    with contextlib.closing(open_reader_at(where)) as book:
        return dict(book.counts())


def answers(where: PgLocation) -> Counter[str]:
    """Every request the ledger recorded, by answer status."""
    found: Counter[str] = Counter()
    with contextlib.closing(open_reader_at(where)) as book:
        for requests in book.request_logs():
            for text in requests:
                found[text.rsplit("-> ", 1)[-1].split()[0]] += 1
    return found


def busiest_pid(uri: str, schema: str) -> int | None:
    """The pid of the instance holding the most lanes now (owners are host:pid:random)."""
    with psycopg.connect(uri, autocommit=True) as db:
        found = db.execute(
            f"SELECT owner, count(*) FROM {schema}.lanes WHERE owner IS NOT NULL "
            "GROUP BY owner ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    return None if found is None else int(str(found[0]).split(":")[1])


def test_three_instances_one_killed_lose_nothing_and_keep_order_and_the_limit(
    tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    where = PgLocation(pg_server.uri, pg_schema)
    config = write_config(tmp_path / "config.json")
    users = [f"user-{n}" for n in range(USERS)]
    sandbox_log = tmp_path / "sandbox.log"
    with sandbox_process(
        "--api-key", API_KEY, "--rate-limit", str(RATE_LIMIT), "--latency-ms", "5", log=sandbox_log
    ) as sandbox:
        args = (
            "--config", config, "--ledger", pg_server.uri, "--pg-schema", pg_schema,
            "--base-url", sandbox, "--lease-ttl", "2s", "--concurrency", str(CONCURRENCY),
        )  # fmt: skip
        with contextlib.ExitStack() as stack:
            instances = [
                stack.enter_context(service_process(*args, log=tmp_path / f"serve-{n}.log"))
                for n in range(3)
            ]
            doors = [instance.url for instance in instances]
            for n, user in enumerate(users):
                assert post(doors[n % 3], "/v1/identify", identify(user)).status_code == 200
            total = USERS * (TRACKS + 1)
            for round_ in range(TRACKS):
                batch = {"batch": [track(user, round_) for user in users]}
                assert post(doors[round_ % 3], "/v1/batch", batch).status_code == 200
            # Mid-stream: a third delivered, the rest queued or in flight.
            assert wait_until(lambda: counts(where)["delivered"] >= total // 3, timeout=30)
            pid = busiest_pid(pg_server.uri, pg_schema)
            killed = next(i for i in instances if i.process and i.process.pid == pid)
            killed.signal(signal.SIGKILL)
            killed.wait(10)
            assert counts(where)["delivered"] < total
            assert wait_until(lambda: counts(where)["delivered"] == total, timeout=90), counts(
                where
            )
        state = sandbox_state(sandbox)
    assert sorted(u["custom_id"] for u in state["users"]) == sorted(users)  # none twice
    repeats = 0
    for user, positions in tracks_by_user(state).items():
        once = [p for i, p in enumerate(positions) if i == 0 or positions[i - 1] != p]
        assert once == list(range(TRACKS)), (user, positions)  # in order; a repeat is adjacent
        repeats += len(positions) - len(once)
    assert repeats <= CONCURRENCY
    seen = answers(where)
    assert seen["429"] <= 0.03 * sum(seen.values()), seen
