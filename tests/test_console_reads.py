"""The console's read models (pipeline/console/reads.py) over each ledger backend: SQLite
and PostgreSQL answer the same (DELIVERY §8: "from the same ledger, SQLite or PostgreSQL")."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pg_server import Server
from serve_helpers import RAW_CONFIG, config_for, identify, track

from pipeline.console import reads
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.pg import PgLocation, open_reader_at, open_writer_at


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | PgLocation:
    if request.param == "sqlite":
        return tmp_path / "console.sqlite"
    server: Server = request.getfixturevalue("pg_server")
    schema: str = request.getfixturevalue("pg_schema")
    return PgLocation(server.uri, schema)


def line(event: dict[str, object]) -> bytes:
    return json.dumps(event).encode()


def fill(where: Path | PgLocation) -> None:
    """u1: identify delivered, a track failed, a track held; ghost: 3 tracks rejected."""
    with open_writer_at(where, "acme") as book:
        book.enqueue("acme:u1-identify", "h0", line(identify("u1")))
        for n in (1, 2):
            book.enqueue(f"acme:u1-track-{n}", f"h{n}", line(track("u1", n)))
        for n in range(3):
            book.enqueue(f"acme:ghost-track-{n}", f"g{n}", line(track("ghost", n)))
        book.record("acme:u1-identify", "delivered", 1, ["POST https://x -> 200"], None, [])
        book.record("acme:u1-track-1", "failed", 6, [], "User.com failed (503) in 30.5 s", [])
        book.record("acme:u1-track-2", "held", 0, [], "held: behind acme:u1-track-1", [])
        for n in range(3):
            book.record(
                f"acme:ghost-track-{n}", "rejected", 1, [], f"no user 'ghost-{n}' (-> 404)", []
            )
        book.flush()


def reader(where: Path | PgLocation) -> Ledger:
    return open_reader_at(where)


def test_failures_group_by_masked_reason_on_each_backend(where: Path | PgLocation) -> None:
    fill(where)
    with reader(where) as book:
        groups = {group.reason: group for group in reads.failures(book)}
    assert set(groups) == {
        "rejected: no user '…' (-> 404)",
        "failed: User.com failed (503) in N s",
        "held: behind <id>",
    }
    rejected = groups["rejected: no user '…' (-> 404)"]
    assert rejected.count == 3
    assert rejected.samples == [f"acme:ghost-track-{n}" for n in range(3)]
    assert 0 < rejected.first_seen <= rejected.last_seen


def test_counts_and_latency_on_each_backend(where: Path | PgLocation) -> None:
    fill(where)
    with reader(where) as book:
        found = reads.counts(book, time.time())
    assert found.statuses["rejected"] == 3
    assert found.queued == 2
    assert found.oldest_queued_age is not None
    assert found.latency_p50 is not None
    assert found.latency_p50 >= 0


def test_a_users_timeline_on_each_backend(where: Path | PgLocation) -> None:
    fill(where)
    with reader(where) as book:
        steps = reads.timeline(book, config_for(RAW_CONFIG), "u1")
        replayable = reads.replayable(book, ["acme:u1-identify", "u1-track-1", "acme:nope"])
    assert [(s.row.key, s.row.status, s.waits_behind) for s in steps] == [
        ("acme:u1-identify", "delivered", None),
        ("acme:u1-track-1", "failed", None),
        ("acme:u1-track-2", "held", "acme:u1-track-1"),
    ]
    assert replayable == ["acme:u1-track-1"]


def test_a_numeric_user_id_and_a_longer_one_are_told_apart(where: Path | PgLocation) -> None:
    with open_writer_at(where, "acme") as book:
        book.enqueue("acme:n7", "h7", line({**identify("x"), "userId": 7, "messageId": "n7"}))
        book.enqueue("acme:n70", "h70", line({**identify("x"), "userId": 70, "messageId": "n70"}))
        book.enqueue("acme:u1", "hu1", line(track("u1", 1)))
        book.enqueue("acme:u10", "hu10", line(track("u10", 1)))
        book.flush()
    cfg = config_for(RAW_CONFIG)
    with reader(where) as book:
        assert [s.row.key for s in reads.timeline(book, cfg, "7")] == ["acme:n7"]
        assert [s.row.key for s in reads.timeline(book, cfg, "u1")] == ["acme:u1"]
