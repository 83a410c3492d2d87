"""`usercom send` commits its ledger in groups (issue 18.2): events read ahead are committed
pending in one commit before any of them is attempted, and outcomes are committed several at a
time, every one of them on disk before the summary.

In process: `run_send` on a real ledger, `FakeUserCom` as the transport, wrapped so that each
request looks, on a connection of its own (which sees only what is committed), whether its
event's pending row is on disk.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from e2e_helpers import SUBDOMAIN, config
from rich.console import Console

from pipeline.cli.sending import run_send
from pipeline.delivery import filing as filing_module
from pipeline.delivery.engine import DeliveryOptions
from pipeline.delivery.feed import GROUP_EVENTS
from pipeline.delivery.filing import Filing
from pipeline.delivery.incoming import incoming
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.outcome import Outcome
from pipeline.testing import FakeUserCom

EVENTS = 300


class Counting(Ledger):
    commits = 0

    def _commit(self) -> None:
        if self._db.in_transaction:
            type(self).commits += 1
        super()._commit()


class Watching(httpx.AsyncBaseTransport):
    """The fake, and for each write the event's row as a separate reader sees it."""

    def __init__(self, path: Path) -> None:
        self.fake = FakeUserCom()
        self.path = path
        self.seen: list[str | None] = []  # each written user's row status when it was sent

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            user = json.loads(request.content)["custom_id"]
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
                found = db.execute(
                    "SELECT status FROM events WHERE key = ?", (f"{SUBDOMAIN}:m-{user}",)
                ).fetchone()
            self.seen.append(None if found is None else str(found[0]))
        return await self.fake.handle_async_request(request)


def identifies(count: int) -> bytes:
    lines = (
        json.dumps({"type": "identify", "messageId": f"m-u{n}", "userId": f"u{n}"})
        for n in range(count)
    )
    return ("\n".join(lines) + "\n").encode()


def test_send_commits_pending_rows_and_outcomes_in_groups_each_row_on_disk_before_its_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Groups by count only: how many outcomes 20 ms gathers depends on the machine's load.
    monkeypatch.setattr(filing_module, "GROUP_SECONDS", 60.0)
    path = tmp_path / "ledger.sqlite"
    watching = Watching(path)
    Counting.commits = 0
    with Counting.open_writer(path, SUBDOMAIN) as book:
        summary, _ = run_send(
            io.BytesIO(identifies(EVENTS)),
            config(),
            ledger=book,
            options=DeliveryOptions(concurrency=8, probe=False),
            sink=None,
            err=Console(file=io.StringIO()),
            total=None,
            retry_rejected=False,
            transport=watching,
        )
        commits = Counting.commits
    assert summary.counts["delivered"] == EVENTS
    # Never attempted before its pending row is committed (DELIVERY §4).
    assert len(watching.seen) >= EVENTS
    assert set(watching.seen) == {"pending"}, set(watching.seen)
    # Every outcome is on disk once the run returns.
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM events GROUP BY status"))
    assert statuses == {"delivered": EVENTS}
    # One commit per event read and one per outcome was 2 x EVENTS; groups of 64 take a few.
    # (9-10 here: 5 groups read, 4-5 groups of outcomes, the last flush.)
    assert commits <= 3 * (EVENTS // GROUP_EVENTS + 1), commits


def test_an_outcome_alone_is_committed_within_the_time_bound(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"

    async def main(book: Ledger) -> tuple[str, str]:
        item = incoming(config(), 1, identifies(1).strip())
        position = book.enqueue(item.key, item.content_hash, item.line)
        book.flush()
        filing = Filing(book, lambda _problem: None)
        filing.file(item, Outcome(item.key, "delivered", 1, position=position))
        staged = status_on_disk(path, item.key)
        await asyncio.sleep(filing_module.GROUP_SECONDS * 10)  # no other outcome comes
        return staged, status_on_disk(path, item.key)

    with Ledger.open_writer(path, SUBDOMAIN) as book:
        staged, later = asyncio.run(main(book))
    assert (staged, later) == ("pending", "delivered")


def status_on_disk(path: Path, key: str) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (status,) = db.execute("SELECT status FROM events WHERE key = ?", (key,)).fetchone()
    return str(status)


def test_an_events_lane_is_worked_out_once_and_again_when_it_is_replaced() -> None:
    from dataclasses import fields, replace

    from pipeline.delivery.incoming import repeated

    event = incoming(config(), 1, identifies(1).strip())
    assert event.lane == "user:u0"
    # A stored field, not a property the engine and the rounds pay for at each look.
    assert {"lane", "company"} <= {f.name for f in fields(event)}
    assert event.company is None
    again = repeated(event, 1)  # no job: only its own order
    assert again.lane == f"key:{again.key}"
    assert again.key != event.key
    assert replace(event, position=7).lane == "user:u0"
