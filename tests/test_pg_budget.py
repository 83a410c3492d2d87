"""One rate budget per app across instances (DELIVERY §5, §7): the budgets row of the
PostgreSQL queue. A 429 one instance meets cuts the app's rate for all, under what all of them
accepted; `--rate` caps them together; a Retry-After and a refused key reach every instance;
an instance that leaves stops taking a share."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import Server
from serve_helpers import (
    API_KEY,
    SUBDOMAIN,
    health,
    identify,
    options,
    post,
    service_in_thread,
    track,
    wait_until,
)

from pipeline.delivery.pg import PgLocation, open_reader_at
from pipeline.delivery.pg.budget import Learned, SharedBudget
from pipeline.delivery.pg.ledger import PgLedger
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.sandbox.options import ForcedStatus


def counts(where: PgLocation) -> dict[str, int]:
    with contextlib.closing(open_reader_at(where)) as book:
        return book.counts()


QUIET = Learned(accepted=0.0, throttled=0, retry_after=0.0, fault=None, resumed=False, cap=None)


@pytest.fixture
def seats(pg_server: Server, pg_schema: str) -> Iterator[tuple[SharedBudget, SharedBudget]]:
    where = PgLocation(pg_server.uri, pg_schema)
    PgLedger.open_pg_writer(where, "acme").close()  # the schema, as a first instance makes it
    one, two = SharedBudget(where, "acme", "one"), SharedBudget(where, "acme", "two")
    yield one, two
    one.close()
    two.close()


def test_instances_share_the_rate_and_a_429_cuts_it_for_all(
    seats: tuple[SharedBudget, SharedBudget],
) -> None:
    one, two = seats
    one.meet(QUIET)
    first = two.meet(dataclasses.replace(QUIET, accepted=20.0))
    assert first.members == 2
    assert first.share == pytest.approx(first.rate / 2)
    busy = dataclasses.replace(QUIET, accepted=20.0)
    one.meet(busy)
    # two met a 429: the app's rate drops under what both accepted together (40/s).
    after = two.meet(dataclasses.replace(busy, throttled=1, retry_after=2.0))
    assert after.rate == pytest.approx(40.0 * 0.95)
    told = one.meet(busy)
    assert told.share == pytest.approx(told.rate / 2)
    assert told.rate < 40.0
    assert 1.0 < told.wait <= 2.0  # two's Retry-After holds for one too


def test_the_rate_cap_is_for_all_instances_together(
    seats: tuple[SharedBudget, SharedBudget],
) -> None:
    one, two = seats
    capped = dataclasses.replace(QUIET, cap=10.0)
    one.meet(capped)
    got = two.meet(capped)
    assert got.rate == 10.0
    assert got.share == 5.0
    two.leave()
    alone = one.meet(capped)
    assert (alone.members, alone.share) == (1, 10.0)


def test_a_refused_key_reaches_every_instance_until_a_probe_succeeds(
    seats: tuple[SharedBudget, SharedBudget],
) -> None:
    one, two = seats
    refused = "User.com refused the API key (401)"
    one.meet(dataclasses.replace(QUIET, fault=refused))
    assert two.meet(QUIET).fault == refused
    assert one.meet(dataclasses.replace(QUIET, fault=refused)).fault == refused
    assert two.meet(dataclasses.replace(QUIET, resumed=True)).fault is None
    assert one.meet(QUIET).fault is None


def test_a_refused_key_met_by_one_service_pauses_the_other(
    tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    where = PgLocation(pg_server.uri, pg_schema)
    refused = (
        ForcedStatus("/events/", 401, method="POST"),
        ForcedStatus("/users-by-id/", 401, method="POST"),
    )
    with serve_in_thread(SandboxOptions(api_key=API_KEY, forced=refused)) as sandbox:
        shared = dataclasses.replace(
            options(tmp_path / "unused.sqlite", sandbox, probe_initial=30.0, probe_max=30.0),
            ledgers={SUBDOMAIN: where},
        )
        with service_in_thread(shared) as one, service_in_thread(shared) as two:
            assert post(one.url, "/v1/track", track("u1", 0)).status_code == 200
            deadline = time.monotonic() + 15
            seen: dict[str, str | None] = {one.url: None, two.url: None}
            while time.monotonic() < deadline and not all(seen.values()):
                for url in seen:
                    seen[url] = seen[url] or health(url)["paused"]
                time.sleep(0.05)
            for url, reason in seen.items():
                assert reason is not None, url
                assert "401" in reason, (url, reason)


def test_when_one_instance_s_probe_succeeds_every_paused_instance_resumes_within_seconds(
    tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    where = PgLocation(pg_server.uri, pg_schema)
    # The first write is refused (a key rotated back, say); then User.com answers again.
    once = (ForcedStatus("/users/", 401, method="POST", times=1),)
    with serve_in_thread(SandboxOptions(api_key=API_KEY, forced=once)) as sandbox:
        quick, slow = (
            dataclasses.replace(
                options(tmp_path / "unused.sqlite", sandbox, probe_initial=wait, probe_max=wait),
                ledgers={SUBDOMAIN: where},
            )
            for wait in (0.3, 60.0)
        )
        with service_in_thread(quick) as one, service_in_thread(slow) as two:
            assert post(one.url, "/v1/identify", identify("u1")).status_code == 200
            seen: dict[str, str | None] = {one.url: None, two.url: None}
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not all(seen.values()):
                for url in seen:
                    seen[url] = seen[url] or health(url)["paused"]
                time.sleep(0.02)
            assert all(seen.values()), seen  # whichever met the 401, both paused
            # The quick one's probe succeeds; the slow one (next own probe in 60 s) follows.
            resumed = time.monotonic()
            assert wait_until(
                lambda: all(health(url)["paused"] is None for url in seen), timeout=10
            ), {url: health(url)["paused"] for url in seen}
            assert time.monotonic() - resumed < 10
            assert wait_until(lambda: counts(where)["delivered"] == 1, timeout=10)
