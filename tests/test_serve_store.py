"""The service's ledger thread (`Store`): a group of writes shares one commit, so a write that
fails the way a full disk fails must fail the whole group (issue 13.2).

SQLite may roll back the whole transaction on SQLITE_FULL or SQLITE_IOERR in the middle of a
statement; the writes of the other jobs of the group went with it, and a COMMIT afterwards has
nothing to commit and "succeeds". The failing write here does what SQLite does (the
transaction rolled back, then `OperationalError`) on a real ledger.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.delivery.ledger import Ledger
from pipeline.serve.store import Store


def full_disk(ledger: Ledger) -> None:
    """What SQLite does on a full disk midway through a statement."""
    ledger.enqueue("acme:b", "hash-b", b"{}")
    ledger.rollback()
    raise sqlite3.OperationalError("database or disk is full")


def run_group(path: Path, fails: Callable[[Ledger], None]) -> tuple[object, object]:
    """Two writes taken as one group (a blocking read holds the thread while both are handed
    in): a row stored, then `fails`. What each of them heard."""
    ledger = Ledger.open_writer(path, "acme", durable=True)
    store = Store({"acme": ledger})

    async def main() -> tuple[object, object]:
        store.start()
        try:
            release = threading.Event()
            blocking = asyncio.ensure_future(store.call(lambda: release.wait(10), writes=False))
            await asyncio.sleep(0.05)
            stored = asyncio.ensure_future(
                store.call(lambda: ledger.enqueue("acme:a", "hash-a", b"{}"), writes=True)
            )
            failing = asyncio.ensure_future(store.call(lambda: fails(ledger), writes=True))
            await asyncio.sleep(0.05)
            release.set()
            await blocking
            return await asyncio.gather(stored, failing, return_exceptions=True)
        finally:
            await asyncio.to_thread(store.close)

    return asyncio.run(main())


def test_a_write_that_fails_like_a_full_disk_fails_every_write_of_its_group(
    tmp_path: Path,
) -> None:
    stored, failing = run_group(tmp_path / "l.sqlite", full_disk)
    assert isinstance(failing, sqlite3.OperationalError)
    # Its neighbour's row went with the rolled-back transaction: it must not hear "committed".
    assert isinstance(stored, sqlite3.OperationalError), stored
    with Ledger.open_reader(tmp_path / "l.sqlite") as book:
        assert book.get("acme:a") is None


@pytest.mark.parametrize("error", [ValueError("not the ledger's"), KeyError("acme:x")])
def test_an_error_of_one_job_alone_leaves_its_neighbours_committed(
    tmp_path: Path, error: Exception
) -> None:
    def fails(_ledger: Ledger) -> None:
        raise error

    stored, failing = run_group(tmp_path / "l.sqlite", fails)
    assert stored == 1
    assert failing is error
    with Ledger.open_reader(tmp_path / "l.sqlite") as book:
        assert book.get("acme:a") is not None
