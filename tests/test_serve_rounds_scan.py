"""The service's look for a round (issue 18.2): when every queued user is held by a running
round, new events arriving do not make the loop read the whole held queue again; anything
that may free a user does. In process: the app's delivery on a real ledger, no round run."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from serve_helpers import options

from pipeline.delivery.ledger import Ledger
from pipeline.delivery.queue import Queued
from pipeline.serve.delivery import SCAN_PAGES, AppDelivery, _Round
from pipeline.serve.metrics import Metrics
from pipeline.serve.store import Store

PAGE = 10


class Counted(Ledger):
    pages = 0

    def take(self, after: int, limit: int) -> list[Queued]:
        type(self).pages += 1
        return super().take(after, limit)


def store_identifies(book: Ledger, users: range) -> None:
    for n in users:
        line = json.dumps({"type": "identify", "messageId": f"m{n}", "userId": "u0"}).encode()
        book.enqueue(f"acme:m{n}", f"h{n}", line)
    book.flush()


def test_arrivals_behind_a_held_queue_do_not_rescan_it_a_freed_user_does(tmp_path: Path) -> None:
    chosen = options(tmp_path, None, page=PAGE)
    (app, path), *_ = chosen.ledgers.items()
    assert isinstance(path, Path)

    async def main() -> tuple[int, int, int]:
        book = Counted.open_writer(path, app)
        store = Store({app: book})
        store.start()
        try:
            store_identifies(book, range(PAGE * (SCAN_PAGES - 2)))  # held, all of it
            delivery = AppDelivery(
                chosen.sources.apps[app], chosen, store, book, Metrics(), asyncio.Event()
            )
            held = _Round.of([])
            held.lanes.add("user:u0")  # a running round holds the one user
            delivery.rounds.append(held)
            assert not await delivery._start_round()
            first = Counted.pages
            store_identifies(book, range(1000, 1003))  # ingest commits three more of u0
            delivery.admitted(3, Counter())
            assert not await delivery._start_round()
            arrivals = Counted.pages - first
            delivery.wake.set()  # a round ended or let users go: look through it all again
            assert not await delivery._start_round()
            return first, arrivals, Counted.pages - first - arrivals
        finally:
            store.close()

    first, arrivals, freed = asyncio.run(main())
    assert first >= SCAN_PAGES - 2
    assert arrivals <= 2, arrivals  # only what joined the back since the last look
    assert freed >= first


def test_a_look_overtaken_by_a_user_let_go_records_nothing_and_the_next_starts_at_the_front() -> (
    None
):
    # A look awaits its pages; a round may let a user go meanwhile. Had the look still
    # recorded "all held up to here", the next ingest's look would start past that user's
    # earlier events and take a later one of them first (seen: a user's tracks 1, 2, 6, 3).
    from pipeline.serve.delivery import _Wake

    async def main() -> tuple[int, int]:
        wake = _Wake()
        token = wake.looking()
        wake.looked(token, 50)
        undisturbed = wake.held_through
        token = wake.looking()
        wake.set()  # a round let a user go while the look read its pages
        wake.looked(token, 80)
        return undisturbed, wake.held_through

    assert asyncio.run(main()) == (50, 0)
