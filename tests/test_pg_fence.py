"""Fencing a lapsed lease (DELIVERY §7 "per-user order across instances"): an instance starts
no request (first attempt, retry, or the next request of an attempt) for a lane it no longer
knows it holds, and an outcome it files for a lane another instance took over never overwrites
what that one filed. Deterministic: a lease book on a fake clock, leases expired by SQL."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from e2e_helpers import FAST, config, lines_of
from pg_server import Server
from rich.console import Console
from serve_helpers import (
    SUBDOMAIN,
    identify,
    options,
    post,
    sandbox_state,
    service_in_thread,
    wait_until,
)

from pipeline.cli.send_cmd import SEND_LEASING
from pipeline.cli.sending import run_send
from pipeline.delivery import Outcome, deliver, read_jsonl
from pipeline.delivery.engine import Control
from pipeline.delivery.loop import run as run_loop
from pipeline.delivery.pg import PgLocation, open_reader_at
from pipeline.delivery.pg.ledger import Leasing, PgLedger
from pipeline.delivery.queue import Arrival, Record
from pipeline.testing import FakeUserCom, Received


def counts(where: PgLocation) -> dict[str, int]:
    with contextlib.closing(open_reader_at(where)) as book:
        return book.counts()


def identifies(user: str, count: int) -> list[str]:
    return lines_of(
        {"type": "identify", "userId": user, "messageId": f"{user}-{n}", "traits": {"n": n}}
        for n in range(count)
    )


def test_no_request_starts_for_a_lane_whose_lease_lapsed_and_its_events_stay_pending() -> None:
    lapsed: set[str] = set()
    sent: list[str] = []

    def watch(seen: Received) -> None:
        if seen.method == "POST" and isinstance(seen.body, dict):
            sent.append(json.dumps(seen.body, sort_keys=True))
            if sum('"u1"' in body for body in sent) == 2:
                lapsed.add("user:u1")  # the renewer came late: u1's lease is not known to hold

    fake = FakeUserCom(routes={"* *": watch})
    control = Control(licensed=lambda lane, _company: lane not in lapsed)
    heard: dict[str, Outcome] = {}
    run_loop(
        deliver(
            read_jsonl([*identifies("u1", 4), *identifies("u2", 2)], config()),
            config(),
            replace(FAST, concurrency=1),
            lambda incoming, outcome: heard.__setitem__(incoming.key, outcome),
            transport=fake,
            control=control,
        )
    )
    statuses = {key.split(":", 1)[1]: outcome.status for key, outcome in heard.items()}
    u1 = [statuses[f"u1-{n}"] for n in range(4)]
    # u1's third event found its lease lapsed before its request: pending, not attempted, and
    # nothing after it went out of order; the other user's lane went on.
    assert u1[:2] == ["delivered", "delivered"], statuses
    assert u1[2] == "pending", statuses
    assert heard["acme:u1-2"].attempts == 0, heard["acme:u1-2"]
    assert set(u1[3:]) <= {"pending", "held"}, statuses
    assert [statuses["u2-0"], statuses["u2-1"]] == ["delivered", "delivered"]
    assert sum('"u1"' in body for body in sent) == 2, sent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


TTL = 30.0


@pytest.fixture
def writers(pg_server: Server, pg_schema: str) -> Iterator[Callable[[Clock], PgLedger]]:
    opened: list[PgLedger] = []

    def open_one(clock: Clock) -> PgLedger:
        leasing = Leasing(ttl=TTL, claim_every=0.0, clock=clock)
        writer = PgLedger.open_pg_writer(PgLocation(pg_server.uri, pg_schema), "acme", leasing)
        opened.append(writer)
        return writer

    yield open_one
    for writer in opened:
        writer.close()


def event(key: str, user: str) -> Arrival:
    message = {"type": "track", "userId": user, "messageId": key, "event": "E"}
    return Arrival(f"acme:{key}", f"h-{key}", json.dumps(message).encode())


def outcome(item: Arrival, status: str, error: str | None = None) -> Record:
    return Record(item.key, item.content_hash, item.line, status, 1, (), error, ())  # type: ignore[arg-type]


def expire_every_lease(server: Server, schema: str) -> None:
    with psycopg.connect(server.uri, autocommit=True) as db:
        db.execute(f"UPDATE {schema}.lanes SET until = now() - interval '1 second'")


def test_a_lease_is_trusted_until_a_margin_before_its_ttl_and_again_after_a_renewal(
    writers: Callable[[Clock], PgLedger],
) -> None:
    clock = Clock()
    a = writers(clock)
    a.admit([event("1", "u1")])
    a.commit()
    assert [q.row.key for q in a.take(0, 10)] == ["acme:1"]
    assert a.licensed("user:u1", None)
    assert not a.licensed("user:u2", None)  # never claimed
    clock.now += TTL * 0.7  # the renewer is late, not yet past the TTL on the server
    assert a.licensed("user:u1", None)
    clock.now += TTL * 0.1  # inside the margin: no new request may start
    assert not a.licensed("user:u1", None)
    assert a.renew_leases() == ["user:u1"]  # the late renewal lands: trusted again
    assert a.licensed("user:u1", None)


def test_a_lane_taken_over_is_never_trusted_again_and_the_old_outcome_is_not_filed(
    writers: Callable[[Clock], PgLedger], pg_server: Server, pg_schema: str
) -> None:
    clock_a, clock_b = Clock(), Clock()
    a, b = writers(clock_a), writers(clock_b)
    first, second = event("1", "u1"), event("2", "u1")
    a.admit([first, second])
    a.commit()
    assert [q.row.key for q in a.take(0, 10)] == ["acme:1", "acme:2"]
    clock_a.now += TTL  # a's renewer stalled for a whole TTL
    expire_every_lease(pg_server, pg_schema)
    assert [q.row.key for q in b.take(0, 10)] == ["acme:1", "acme:2"]  # b took over
    b.file([outcome(first, "failed", "500 from User.com")])
    b.commit()
    assert a.renew_leases() == []  # the stalled renewal comes back: the lane is b's now
    assert not a.licensed("user:u1", None)
    # What a was sending when it stalled ends: its outcomes must not overwrite b's.
    a.file([outcome(first, "delivered"), outcome(second, "held", "behind 1")])
    a.commit()
    assert b.get(first.key) is not None
    assert [b.get(item.key).status for item in (first, second)] == ["failed", "pending"]  # type: ignore[union-attr]
    b.file([outcome(first, "delivered")])  # the holder's own outcome is filed
    b.commit()
    assert b.get(first.key).status == "delivered"  # type: ignore[union-attr]


def test_the_service_starts_no_request_for_a_lane_whose_lease_it_does_not_trust(
    sandbox: str, tmp_path: Path, pg_server: Server, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = PgLocation(pg_server.uri, pg_schema)
    shared = dataclasses.replace(
        options(tmp_path / "unused.sqlite", sandbox), ledgers={SUBDOMAIN: where}
    )
    with service_in_thread(shared) as one:
        ledger = one.app().ledger
        asked: list[str] = []

        def untrusted(lane: str, _company: str | None) -> bool:
            asked.append(lane)
            return False  # as if every renewal since the claim had come late

        monkeypatch.setattr(ledger, "licensed", untrusted)
        assert post(one.url, "/v1/identify", identify("u1")).status_code == 200
        assert wait_until(lambda: "user:u1" in asked, timeout=10)
        assert sandbox_state(sandbox)["users"] == []
        assert counts(where)["delivered"] == 0  # still queued, for whoever holds the lane
        monkeypatch.undo()  # a renewal landed: trusted again
        assert wait_until(lambda: counts(where)["delivered"] == 1, timeout=10)


def test_send_starts_no_request_for_a_lane_whose_lease_it_does_not_trust(
    pg_server: Server, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = PgLocation(pg_server.uri, pg_schema)
    fake = FakeUserCom()
    book = PgLedger.open_pg_writer(where, SUBDOMAIN, SEND_LEASING)
    try:
        monkeypatch.setattr(book, "licensed", lambda _lane, _company: False)
        summary, _ = run_send(
            io.BytesIO(("\n".join(identifies("u1", 2)) + "\n").encode()),
            config(),
            ledger=book,
            options=replace(FAST, probe=False),
            sink=None,
            err=Console(file=io.StringIO()),
            total=None,
            retry_rejected=False,
            transport=fake,
        )
    finally:
        book.close()
    assert fake.requests == []
    assert summary.counts["delivered"] == 0
    assert counts(where)["pending"] + counts(where)["held"] == 2


@pytest.mark.parametrize("user", ["ada\x00x", "s\ud800", "plain"])
def test_a_lane_is_known_by_the_name_the_event_gives_it_whatever_postgresql_stored(
    user: str,
) -> None:
    # The lanes table hands back a NUL as U+FFFD and a lone surrogate as its escape: the lease
    # book must still find the lane under the event's own name, or that user is never sent.
    from pipeline.delivery.pg.fence import LeaseBook, as_stored
    from pipeline.delivery.pg.text import _dumper

    stored = bytes(_dumper()(str).dump(user) or b"").decode("utf-8")
    assert as_stored(user) == stored
    book = LeaseBook(30.0, clock=lambda: 0.0)
    book.granted([stored], asked_at=0.0)
    assert book.holds(user)
