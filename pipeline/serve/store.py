"""The ledgers' one writer thread: every ledger call of the service runs here, in order.

The event loop never waits on SQLite: it hands a job to this thread and awaits its future.
**Group commit**: the thread takes every job that is waiting, runs them, and commits once
(one fsync per ledger, `synchronous=FULL`) before it answers any job that wrote, so many
concurrent ingest requests share one commit and none is answered before its events are on
disk. A job that only reads runs after a commit of what came before it, so it never sees
what is not committed yet. Jobs run in the order they were handed in: an outcome filed
before a read of the queue is seen by that read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pipeline.delivery.ledger import Ledger

T = TypeVar("T")
MAX_GROUP = 2000  # jobs run before one commit at most

log = logging.getLogger("usercom.serve")


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

    ledgers: Mapping[str, Ledger]
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
            for job in group:
                if job is None:
                    stopping = True
                    continue
                if not job.writes and written:
                    self._commit(written)
                    written = []
                try:
                    job.result = job.run()
                except Exception as error:  # noqa: BLE001 - handed to the awaiting coroutine
                    job.error = error
                if job.writes:
                    written.append(job)
                else:
                    self._settle([job])
            if written:
                self._commit(written)

    def _commit(self, jobs: list[_Job]) -> None:
        try:
            for ledger in self.ledgers.values():
                ledger.flush()
            self.commits += 1
            self._failing = False
        except Exception as error:  # noqa: BLE001 - every waiting job hears of it
            if not self._failing:  # the callers pause on it and say so: no line per retry
                log.error("event=ledger_commit_failed error=%r", str(error))  # noqa: TRY400
            self._failing = True
            for ledger in self.ledgers.values():
                with contextlib.suppress(Exception):
                    ledger.rollback()
            for job in jobs:
                job.error = job.error or error
        self._settle(jobs)

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
