"""`usercom serve` on one PostgreSQL queue (DELIVERY §7), in this process: two services
share a database; what either one accepted is delivered once, in per-user order, whichever of
them ingested it; `/health` of each says so."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from pg_server import Server
from serve_helpers import (
    SUBDOMAIN,
    health,
    identify,
    options,
    post,
    sandbox_state,
    service_in_thread,
    track,
    tracks_by_user,
    wait_until,
)

from pipeline.delivery.pg import PgLocation, open_reader_at


def counts(where: PgLocation) -> dict[str, int]:
    with contextlib.closing(open_reader_at(where)) as book:
        return book.counts()


def test_two_services_on_one_database_deliver_everything_once_in_order(
    sandbox: str, tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    where = PgLocation(pg_server.uri, pg_schema)
    users = [f"user-{n}" for n in range(10)]
    shared = dataclasses.replace(
        options(tmp_path / "unused.sqlite", sandbox, concurrency=4), ledgers={SUBDOMAIN: where}
    )
    with service_in_thread(shared) as one, service_in_thread(shared) as two:
        doors = [one.url, two.url]
        for n, user in enumerate(users):
            assert post(doors[n % 2], "/v1/identify", identify(user)).status_code == 200
        for round_ in range(6):
            # Each user's tracks arrive through both doors, in order: round by round.
            batch = [track(user, round_ * 2 + i) for user in users for i in range(2)]
            door = doors[round_ % 2]
            assert post(door, "/v1/batch", {"batch": batch}).status_code == 200
        total = len(users) * 13
        assert wait_until(lambda: counts(where)["delivered"] == total, timeout=60), counts(where)
        state = sandbox_state(sandbox)
        assert sorted(u["custom_id"] for u in state["users"]) == sorted(users)  # none twice
        for user, positions in tracks_by_user(state).items():
            assert positions == list(range(12)), user
        for door in doors:
            assert health(door)["paused"] is None
        # Each one's queue depth is the database's, not its own tally of what it stored and
        # filed (which would drift: one stores, the other delivers).
        assert wait_until(lambda: [health(door)["queued"] for door in doors] == [0, 0], 10)
