"""`usercom send`'s filing when a commit fails (issue 13.2), in process.

`FullDisk` is a real ledger whose commits fail while `full` is set the way SQLite's do on a
full disk: the transaction is rolled back (events batched in it are gone too) and
`OperationalError` is raised. The end-to-end tests (test_ledger_cannot_commit.py) fill a disk
for real; these pin the cases they cannot reach quickly (the disk never frees).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import SUBDOMAIN, config, key_of

from pipeline.delivery import filing as filing_module
from pipeline.delivery.filing import Filing, refile_kept
from pipeline.delivery.incoming import Incoming, incoming
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.outcome import Outcome, Status


class Disk:
    full = False


class FullDisk(Ledger):
    def _commit(self) -> None:
        if Disk.full and self._db.in_transaction:
            self._db.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        super()._commit()


def stored(book: Ledger, message_id: str) -> Incoming:
    line = json.dumps({"type": "track", "messageId": message_id, "userId": "u", "event": "E"})
    item = incoming(config(), 0, line.encode())
    position = book.enqueue(item.key, item.content_hash, item.line)
    return Incoming(item.key, position, item.job, item.content_hash, item.line)


def outcome(item: Incoming, status: Status) -> Outcome:
    return Outcome(item.key, status, attempts=1, position=item.position)


@pytest.fixture(autouse=True)
def disk() -> Iterator[None]:
    Disk.full = False
    yield
    Disk.full = False


def test_outcomes_kept_on_a_full_disk_are_filed_once_it_frees_even_when_rolled_back(
    tmp_path: Path,
) -> None:
    heard: list[str] = []
    with FullDisk.open_writer(tmp_path / "l.sqlite", SUBDOMAIN) as book:
        first = stored(book, "m0")
        filing = Filing(book, heard.append)
        assert filing.file(first, outcome(first, "delivered"))
        second, third = stored(book, "m1"), stored(book, "m2")  # batched, not committed
        Disk.full = True
        assert not filing.file(second, outcome(second, "delivered"))
        assert not filing.file(third, outcome(third, "pending"))  # not even tried
        assert heard == ["database or disk is full"]
        assert book.get(key_of("m1")) is None  # went with the rolled-back transaction
        assert not filing.refile()
        Disk.full = False
        assert filing.refile()
        assert [book.get(key_of(f"m{n}")).status for n in range(3)] == [  # type: ignore[union-attr]
            "delivered",
            "delivered",
            "pending",
        ]
        fault = filing.fault(has_ledger=True)
        assert fault is not None
        assert "every outcome is filed now: re-run with the same --ledger to resume" in fault


def test_a_disk_that_never_frees_names_the_finished_events_a_re_run_sends_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filing_module, "PATIENCE_S", 0.3)
    monkeypatch.setattr(filing_module, "WAITS_S", (0.05,))
    said: list[str] = []
    with FullDisk.open_writer(tmp_path / "l.sqlite", SUBDOMAIN) as book:
        items = [stored(book, f"m{n}") for n in range(3)]
        book.flush()
        filing = Filing(book, lambda _problem: None)
        Disk.full = True
        for item, status in zip(items, ("delivered", "failed", "pending"), strict=True):
            filing.file(item, outcome(item, status))  # type: ignore[arg-type]
        asyncio.run(refile_kept(filing, said.append, lambda: False))
        assert len(filing.kept) == 3
        assert said == [
            "usercom send: filing the outcomes of 3 events again, for up to 0 s (free space "
            "on the ledger's disk)"
        ]
        fault = filing.fault(has_ledger=True)
        assert fault is not None
        assert "1 events finished (delivered or rejected) could not be filed" in fault
        assert f"(positions {items[0].position})" in fault
        assert fault.endswith(
            "free space on its disk, then re-run with the same --ledger to resume"
        )
        scratch = filing.fault(has_ledger=False)
        assert scratch is not None
        assert "the run's scratch ledger (in the temporary folder) cannot commit" in scratch
        assert scratch.endswith("(or set TMPDIR) and re-run, or use --ledger to resume a run")
        Disk.full = False
