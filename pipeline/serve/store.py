"""The ledgers' one writer thread: every ledger call of the service runs here, in order.

The event loop never waits on SQLite: it hands a job to this thread and awaits its future.
**Group commit**: the thread takes every job that is waiting, runs them, and commits once
(one fsync per ledger, `synchronous=FULL`) before it answers any job that wrote, so many
concurrent ingest requests share one commit and none is answered before its events are on
disk. A job that only reads runs after a commit of what came before it, so it never sees
what is not committed yet. Jobs run in the order they were handed in: an outcome filed
before a read of the queue is seen by that read.

A write that fails the way a full disk or an I/O error fails (SQLite may then roll back the
whole transaction, midway through a statement) fails every write of its group: theirs may
have gone with it, and a COMMIT after that has nothing to commit and "succeeds", so no job
of the group may be told its writes are on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pipeline.delivery.ledger import LedgerError
from pipeline.delivery.queue import DeliveryQueue

T = TypeVar("T")
MAX_GROUP = 2000  # jobs run before one commit at most

log = logging.getLogger("usercom.serve")


def rolls_back(error: BaseException) -> bool:
    """Whether SQLite may have rolled the transaction back on this error: SQLITE_FULL,
    SQLITE_IOERR, SQLITE_BUSY, SQLITE_NOMEM (operational errors) or a damaged file."""
    return isinstance(error, sqlite3.OperationalError) or type(error) is sqlite3.DatabaseError


def ledger_trouble(error: BaseException) -> bool:
    """Whether an error is the ledger's (its disk, its file), not one event's data."""
    return rolls_back(error) or isinstance(error, LedgerError)


@dataclass(slots=True)
class _Job:
    run: Callable[[], Any]
    writes: bool
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class Store:
    """The service's ledgers (subdomain -> writer) behind their one thread."""

    ledgers: Mapping[str, DeliveryQueue]
    _jobs: queue.SimpleQueue[_Job | None] = field(default_factory=queue.SimpleQueue)
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    commits: int = 0  # groups committed (for the benchmark's curiosity)
    _failing: bool = False  # the last commit failed (said once, not at every retry)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name="usercom-ledger", daemon=True)
        self._thread.start()

    async def call(self, run: Callable[[], T], *, writes: bool) -> T:
        """Run `run()` on the ledger thread; with `writes`, answer only once it is committed."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("the ledger thread is not running")
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_Job(run, writes, future))
        return await future

    def close(self) -> None:
        """Finish the jobs handed in, commit, stop the thread and close the ledgers."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        for ledger in self.ledgers.values():
            ledger.close()

    # -- the thread ----------------------------------------------------------------------------

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            group: list[_Job | None] = [first]
            with contextlib.suppress(queue.Empty):
                while len(group) < MAX_GROUP:
                    group.append(self._jobs.get_nowait())
            written: list[_Job] = []
            broken: BaseException | None = None  # a write failed as a full disk fails
            for job in group:
                if job is None:
                    stopping = True
                    continue
                if not job.writes and written:
                    self._commit(written, broken)
                    written, broken = [], None
                try:
                    job.result = job.run()
                except Exception as error:  # noqa: BLE001 - handed to the awaiting coroutine
                    job.error = error
                    if job.writes and rolls_back(error):
                        broken = broken or error
                if job.writes:
                    written.append(job)
                else:
                    self._settle([job])
            if written:
                self._commit(written, broken)

    def _commit(self, jobs: list[_Job], broken: BaseException | None = None) -> None:
        """Commit the group's writes, or (`broken`, or a commit that fails) roll them all back
        and tell every job of the group."""
        failure = broken or self._flush_all()
        if failure is None:
            self.commits += 1
            self._failing = False
        else:
            if not self._failing:  # the callers pause on it and say so: no line per retry
                log.error("event=ledger_commit_failed error=%r", str(failure))
            self._failing = True
            for ledger in self.ledgers.values():
                with contextlib.suppress(Exception):
                    ledger.rollback()
            for job in jobs:
                job.error = job.error or failure
        self._settle(jobs)

    def _flush_all(self) -> BaseException | None:
        try:
            for ledger in self.ledgers.values():
                ledger.commit()
        except Exception as error:  # noqa: BLE001 - every waiting job hears of it
            return error
        return None

    def _settle(self, jobs: list[_Job]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_answer, jobs)


def _answer(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)
