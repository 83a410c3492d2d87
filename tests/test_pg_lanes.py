"""Leases per lane on the PostgreSQL queue (DELIVERY §7): a writer takes only events of lanes
it holds; a group event also needs its company's lane; a lane whose holder stopped is taken
over after its TTL, its first unfinished event marked "possibly sent twice"; a clean close
frees its lanes at once; a lane emptied and released comes back with its next event."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import psycopg
import pytest
from e2e_helpers import invoke_cli
from pg_server import Server

from pipeline.delivery.pg import PgLocation
from pipeline.delivery.pg.lanes import DOUBT
from pipeline.delivery.pg.ledger import Leasing, PgLedger
from pipeline.delivery.queue import Arrival, Record

Opener = Callable[..., PgLedger]
ONE_LANE = Leasing(ttl=30.0, max_lanes=1, claim_every=0.0)
MANY = Leasing(ttl=30.0, max_lanes=64, claim_every=0.0)


def event(key: str, user: str, kind: str = "track", **extra: object) -> Arrival:
    message = {"type": kind, "userId": user, "messageId": key, "event": "E", **extra}
    return Arrival(f"acme:{key}", f"h-{key}", json.dumps(message).encode())


def delivered(item: Arrival) -> Record:
    return Record(item.key, item.content_hash, item.line, "delivered", 1, (), None, ())


@pytest.fixture
def open_writer(pg_server: Server, pg_schema: str) -> Iterator[Opener]:
    opened: list[PgLedger] = []

    def open_one(leasing: Leasing = MANY) -> PgLedger:
        writer = PgLedger.open_pg_writer(PgLocation(pg_server.uri, pg_schema), "acme", leasing)
        opened.append(writer)
        return writer

    yield open_one
    for writer in opened:
        writer.close()


def keys(queue: PgLedger) -> list[str]:
    return [q.row.key for q in queue.take(0, 100)]


def test_two_writers_take_disjoint_lanes_in_position_order(open_writer: Opener) -> None:
    a, b = open_writer(ONE_LANE), open_writer(ONE_LANE)
    a.admit([event("1", "u1"), event("2", "u2"), event("3", "u1"), event("4", "u2")])
    a.commit()
    first, second = keys(a), keys(b)
    assert sorted([first, second]) == [["acme:1", "acme:3"], ["acme:2", "acme:4"]]
    assert keys(a) == first  # held: the same lane again, nothing of the other's


def test_a_group_event_waits_for_its_company_and_holds_its_users_later_events(
    open_writer: Opener,
) -> None:
    a, b = open_writer(ONE_LANE), open_writer(ONE_LANE)
    a.admit(
        [
            event("g1", "u1", "group", groupId="c1"),
            event("g2", "u2", "group", groupId="c1"),
            event("t2", "u2"),
        ]
    )
    a.commit()
    first, second = keys(a), keys(b)
    together = sorted([first, second])
    # One of them writes company c1; the other's group event and the track after it wait.
    assert together in ([[], ["acme:g1"]], [[], ["acme:g2", "acme:t2"]])


def test_a_lane_whose_holder_stopped_is_taken_over_after_its_ttl(
    open_writer: Opener, pg_server: Server, pg_schema: str
) -> None:
    a, b = open_writer(), open_writer()
    a.admit([event("1", "u1"), event("2", "u1")])
    a.commit()
    assert keys(a) == ["acme:1", "acme:2"]
    assert keys(b) == []  # held by a
    with psycopg.connect(pg_server.uri, autocommit=True) as db:  # a's lease runs out
        db.execute(f"UPDATE {pg_schema}.lanes SET until = now() - interval '1 second'")
    assert keys(b) == ["acme:1", "acme:2"]
    assert b.doubt("acme:1") == DOUBT  # the one a may have been sending
    assert b.doubt("acme:2") is None
    assert keys(a) == []
    told = invoke_cli("explain", "1", "--ledger", pg_server.uri, "--pg-schema", pg_schema)
    assert told.returncode == 0, told.stderr
    assert f"note      {DOUBT}" in told.stdout
    as_json = invoke_cli(
        "explain", "2", "--json", "--ledger", pg_server.uri, "--pg-schema", pg_schema
    )
    assert json.loads(as_json.stdout)["possibly_sent_twice"] is None


def test_a_clean_close_frees_the_lanes_at_once(open_writer: Opener) -> None:
    a, b = open_writer(), open_writer()
    a.admit([event("1", "u1")])
    a.commit()
    assert keys(a) == ["acme:1"]
    a.close()
    assert keys(b) == ["acme:1"]
    assert b.doubt("acme:1") is None


def test_a_lane_released_when_empty_comes_back_with_its_next_event(open_writer: Opener) -> None:
    a, b = open_writer(), open_writer()
    first = event("1", "u1")
    a.admit([first])
    a.commit()
    assert keys(a) == ["acme:1"]
    a.file([delivered(first)])
    a.commit()
    assert keys(a) == []  # released: nothing unfinished
    b.admit([event("2", "u1")])
    b.commit()
    assert keys(b) == ["acme:2"]


def failed(item: Arrival) -> Record:
    return Record(item.key, item.content_hash, item.line, "failed", 1, (), "500", ())


def test_a_lane_waiting_for_a_retry_frees_its_slot_until_the_retry_is_due(
    open_writer: Opener, pg_server: Server, pg_schema: str
) -> None:
    waiting = Leasing(
        ttl=30.0, max_lanes=1, claim_every=0.0, retry_delay=lambda _n: 600.0, give_up_after=1e9
    )
    a, b = open_writer(waiting), open_writer(waiting)
    first = event("1", "u1")
    a.admit([first])
    a.commit()
    assert keys(a) == ["acme:1"]
    a.file([failed(first)])  # its retry is 10 minutes away
    a.admit([event("2", "u2")])
    a.commit()
    # Before, u1's lane kept a's one slot for those 10 minutes and u2 waited for room.
    assert keys(a) == ["acme:2"]
    assert keys(b) == []  # u1 waits for its retry time; nobody holds it meanwhile
    with psycopg.connect(pg_server.uri, autocommit=True) as db:  # ten minutes later
        db.execute(
            f"UPDATE {pg_schema}.lanes SET until = now() - interval '1 second' "
            "WHERE lane = 'user:u1'"
        )
    assert keys(b) == ["acme:1"]
    assert b.doubt("acme:1") is None  # given back, not taken over from a live sender


def test_a_lane_left_with_a_given_up_event_only_is_given_back(open_writer: Opener) -> None:
    gives_up = Leasing(
        ttl=30.0, max_lanes=1, claim_every=0.0, retry_delay=lambda _n: 0.0, give_up_after=0.0
    )
    a = open_writer(gives_up)
    first = event("1", "u1")
    a.admit([first])
    a.commit()
    assert keys(a) == ["acme:1"]
    a.file([failed(first)])  # and older than --give-up-after: it stays failed, holds nobody
    a.admit([event("2", "u2")])
    a.commit()
    assert keys(a) == ["acme:2"]
