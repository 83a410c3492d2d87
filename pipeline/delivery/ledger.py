"""The ledger (DELIVERY §2, §4): one SQLite row per event key, and the queue of unfinished events.

Each event is stored `pending` with its original line as it is read (`enqueue`); its outcome
replaces the status as it arrives (`record`). The line is kept for every status, so `usercom
failed` exports unfinished or rejected events byte for byte, in `position` order.

Safety:

- **One writer per ledger**: `Ledger.open_writer` takes an exclusive, non-blocking `flock` on a
  sidecar file `<ledger>.lock` that holds the writer's pid, then one on the ledger file itself,
  which follows the file when the lock file is removed or the ledger renamed. The kernel
  releases both when the process dies, so a killed run never leaves a stale lock. A second
  writer gets `LedgerBusy`.
  The lock and SQLite's journals are named after the real file (symlinks resolved), and a file
  with a second hard link is refused: every name that reaches the file reaches the same lock.
- **Readers take no lock**: `Ledger.open_reader` opens the file read-only (SQLite URI
  `mode=ro`); the WAL journal lets it read while a writer commits. Where SQLite cannot create
  the `-shm` it needs for that (a read-only folder) and no `-wal` holds unmerged commits, the
  file is read as `immutable=1`.
- **A damaged file is refused at open** (`PRAGMA quick_check`, by readers and writers alike),
  in one line, and left as it is.
- **A file that is not a ledger of ours is never altered**: before anything writes to it (or
  creates the lock sidecar next to it), the file is inspected read-only: the SQLite header, then
  a `meta` table with `kind = 'usercom-ledger'`. A WAL-mode SQLite file with no `-wal` beside it
  is inspected with `immutable=1`, so not even SQLite's `-shm`/`-wal` sidecars appear.
- **A new ledger is created atomically**: its schema and `meta` rows are one transaction in
  rollback-journal mode (a crash leaves an empty file, which counts as new), then the file is
  switched to WAL.
- **Batching**: `enqueue` runs once per input event, so enqueues share a transaction committed
  every `BATCH` rows and whenever `record`, `requeue`, `flush` or `close` runs. `record` commits at
  once, together with any enqueue before it, so an outcome is never on disk without its event.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import heapq
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast

from pipeline.delivery.incoming import repeat_key, repeat_reason
from pipeline.delivery.lifecycle import FINISHED, STATUSES, UNFINISHED, Status
from pipeline.delivery.outcome import Logged
from pipeline.delivery.queue import (
    Admit,
    Admitted,
    Arrival,
    Known,
    Queued,
    Record,
    Row,
    admission,
    filed_as,
)

__all__ = [
    "FINISHED",
    "STATUSES",
    "UNFINISHED",
    "ErrorGroup",
    "Ledger",
    "LedgerBusy",
    "LedgerError",
    "Queued",
    "Row",
    "Status",
    "error_groups",
    "ledger_files",
    "sqlite_errors_as_ledger_errors",
]

KIND: Final = "usercom-ledger"
VERSION: Final = "2"
BATCH: Final = 1000  # enqueues per committed transaction
PAGE: Final = 500  # rows per query when iterating in position order
_KEYS_PER_STATEMENT: Final = 500
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
LOCK_SUFFIX: Final = ".lock"
# SQLite's own sidecars, named after the database path: the write-ahead log, its index, and
# the rollback journal (used while a new ledger is created).
SQLITE_SIDECARS: Final = ("-wal", "-shm", "-journal")
_OLD_COLUMNS: Final = frozenset({"key", "status", "attempts", "requests", "error", "line"})
_PROBLEM_TERM: Final = "status IN ('failed', 'held', 'rejected')"
_COLUMNS: Final = "key, position, status, hash, line, attempts, requests, error, warnings"
_COLUMNS_BY_POSITION: Final = f"position, {_COLUMNS}"

_SCHEMA: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE events (
        key TEXT PRIMARY KEY,
        position INTEGER NOT NULL UNIQUE,
        status TEXT NOT NULL,
        hash TEXT NOT NULL,
        line BLOB NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        requests TEXT NOT NULL DEFAULT '[]',
        error TEXT,
        warnings TEXT NOT NULL DEFAULT '[]',
        updated REAL,
        received REAL,
        failures INTEGER NOT NULL DEFAULT 0,
        forgotten REAL
    )""",
    "CREATE INDEX events_status_position ON events (status, position)",
)
# Added after format 2 was first written, by every writer at open (IF NOT EXISTS).
_ADDED_INDEXES: Final = (
    # The failed, held and rejected events only (a few of a big ledger), with what the
    # console's failures page reads of them: no row of the table is visited.
    f"CREATE INDEX IF NOT EXISTS events_problems ON events (status, position, key, error, "
    f"updated) WHERE {_PROBLEM_TERM}",
)

_ENQUEUE: Final = """
INSERT INTO events (key, position, status, hash, line, error, updated, received)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    position = excluded.position,
    status = excluded.status,
    hash = excluded.hash,
    line = excluded.line,
    attempts = 0,
    requests = '[]',
    error = excluded.error,
    warnings = '[]',
    updated = excluded.updated,
    received = excluded.received,
    failures = 0,
    forgotten = NULL
"""
# Columns added after format 2 was first written: a writer adds them to an older ledger (an
# ALTER TABLE, which older readers do not notice); a reader of an older ledger reads defaults.
_ADDED_COLUMNS: Final = (
    ("received", "REAL"),
    ("failures", "INTEGER NOT NULL DEFAULT 0"),
    ("forgotten", "REAL"),
)


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """The events of one status and one error (the console masks and merges them)."""

    status: Status
    error: str  # '' when none
    count: int
    first: float  # the earliest last change (0 when unknown)
    last: float


def error_groups(sums: Sequence[Sequence[Any]]) -> list[ErrorGroup]:
    """ErrorGroups from (status, error, count, min updated, max updated) rows (what both
    backends' queries give)."""
    return [
        ErrorGroup(cast(Status, status), str(error), int(count), float(lo or 0), float(hi or 0))
        for status, error, count, lo, hi in sums
    ]


class LedgerError(Exception):
    """One-line, user-facing reason (exit 2): not a ledger of ours, another app's ledger,
    folder missing, cannot open."""


class LedgerBusy(LedgerError):
    """Another writer holds the lock; `pid` is its process id when the lock file names it."""

    def __init__(self, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"ledger in use by {holder}: wait for it to finish or use another --ledger"
        )
        self.pid = pid


class Ledger:
    """A ledger file, opened by `open_writer` (one per file, locked) or `open_reader`."""

    def __init__(
        self,
        path: Path,
        app: str,
        db: sqlite3.Connection,
        lock_fd: int | None,
        file_fd: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Use `open_writer` or `open_reader`."""
        self._clock = clock  # what stamps received/updated (tests pass a fake one)
        self._path = path
        self._app = app
        self._db = db
        self._lock_fd = lock_fd
        self._file_fd = file_fd  # the ledger file itself, flocked; closed after `db`
        self._guard = threading.RLock()
        self._batched = 0
        self._next = 1
        self._closed = False
        self._atomic = 0  # `atomic` blocks open: no batch commit may split them
        self._aborted = False  # SQLite rolled back a transaction under an `atomic` block
        present = {str(c[1]) for c in db.execute("PRAGMA table_info(events)")}
        self._received = "received" if "received" in present else "NULL"
        self._failures = "failures" if "failures" in present else "0"
        self._forgotten = "forgotten" if "forgotten" in present else "NULL"
        self._problems_indexed = (
            db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'events_problems'"
            ).fetchone()
            is not None
        )
        if lock_fd is not None:
            (top,) = db.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
            self._next = int(top) + 1

    # -- opening and closing ------------------------------------------------------------------

    @classmethod
    def open_writer(
        cls,
        path: Path,
        app: str,
        *,
        durable: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> Ledger:
        """Open (or create) the ledger of `app` at `path` for writing, holding its lock.

        `durable`: every commit is on disk when it returns (SQLite `synchronous=FULL`, for the
        service, which acknowledges events only once they are committed); otherwise a commit
        survives a crash of the process but maybe not of the machine (`synchronous=NORMAL`).

        Raises LedgerBusy when another writer holds it, LedgerError when the folder is missing,
        the file is not a ledger of ours (it is left untouched), or belongs to another app.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise LedgerError(f"ledger folder {path.parent} does not exist: create it first")
        _check_app(path, _inspect(path), app)  # before the lock file appears beside it
        lock_fd = _lock(path)
        try:
            file_fd = _lock_the_file(path)
            try:
                db = _open_locked(path, app, durable=durable)
                try:
                    return cls(path, app, db, lock_fd, file_fd, clock)
                except BaseException:
                    db.close()
                    raise
            except BaseException:
                os.close(file_fd)  # only once SQLite closed: see `_lock_the_file`
                raise
        except BaseException:
            _unlock(lock_fd)
            raise

    @classmethod
    def open_reader(cls, path: Path) -> Ledger:
        """Open an existing ledger read-only, with no lock (works while a writer runs)."""
        path = Path(path)
        app = _inspect(path)
        if app is None:
            what = "is empty" if path.exists() else "does not exist"
            raise LedgerError(f"no ledger at {path}: the file {what}")
        db = _read_only(path, immutable=False)
        try:
            db.execute("PRAGMA query_only=ON")
            _check_intact(db, path)
            return cls(path, app, db, None)
        except sqlite3.Error as problem:
            db.close()
            raise LedgerError(f"cannot read ledger {path}: {problem}") from problem
        except BaseException:
            db.close()
            raise

    @property
    def app(self) -> str:
        """The app this ledger belongs to (its `meta` row)."""
        return self._app

    @property
    def path(self) -> Path:
        return self._path

    @property
    def where(self) -> str:
        """The ledger as messages name it: its file, or a database's URI (password masked)."""
        return str(self._path)

    @property
    def writable(self) -> bool:
        return self._lock_fd is not None

    def close(self) -> None:
        """Commit what is batched, close the database and release the lock (idempotent)."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            try:
                if self._lock_fd is not None:
                    self._commit()
            finally:
                self._db.close()
                if self._file_fd is not None:  # after SQLite's close: see `_lock_the_file`
                    os.close(self._file_fd)
                    self._file_fd = None
                if self._lock_fd is not None:
                    _unlock(self._lock_fd)
                    self._lock_fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------------

    def get(self, key: str) -> Row | None:
        with self._guard:
            found = self._db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE key = ?", (key,)
            ).fetchone()
        return None if found is None else row_of(found)

    def unfinished(self) -> Iterator[Row]:
        """The pending, failed and held events, in position order.

        Read in pages: a row changed after its page was read is yielded as it was; a row that
        moves to the back of the queue (enqueued again) after this call is not yielded again;
        no row is yielded twice. Safe to write to the ledger while iterating.
        """
        for found in self._ordered(UNFINISHED, _COLUMNS_BY_POSITION):
            yield row_of(found[1:])

    def lines(self, statuses: Sequence[Status]) -> Iterator[bytes]:
        """The original lines of the events in `statuses`, byte for byte, in position order
        (events whose line retention dropped are left out)."""
        columns = f"position, line, {self._forgotten}"
        for _, line, forgotten in self._ordered(known_statuses(statuses), columns):
            if forgotten is None:  # else retention dropped the line (`forget_lines`)
                yield bytes(line)

    def counts(self) -> dict[str, int]:
        """Events per status, every status present (0 when none).

        Delivered events are most of a ledger, and counting an index range of a million
        entries is slow while SQLite counts a whole table from its b-tree at once: the other
        statuses are counted (index ranges, small but for a backlog) and subtracted from the
        total, all in one read (a reader's own transaction unless a snapshot is open)."""
        others = tuple(status for status in STATUSES if status != "delivered")
        marks = ", ".join("?" * len(others))
        with self._guard, self._one_read():
            (total,) = self._db.execute("SELECT count(*) FROM events").fetchone()
            found = self._db.execute(
                f"SELECT status, count(*) FROM events WHERE status IN ({marks}) GROUP BY status",
                others,
            ).fetchall()
        result: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, count in found:
            result[str(status)] = int(count)
        result["delivered"] = int(total) - sum(result[status] for status in others)
        return result

    @contextlib.contextmanager
    def _one_read(self) -> Iterator[None]:
        """Statements that must see one state: a reader's read transaction (a writer's own
        connection is the only one that changes the ledger, so it sees one state anyway)."""
        if self._lock_fd is not None or self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._end_read()

    def _end_read(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    def rows(self, statuses: Sequence[Status] | None = None) -> Iterator[Row]:
        """The events in `statuses` (None: every status), in position order, read in pages.

        Like `unfinished`: a row that changes after its page was read is yielded as it was, and
        no row is yielded twice. Works on a reader while a writer commits.
        """
        chosen = STATUSES if statuses is None else known_statuses(statuses)
        for found in self._ordered(chosen, _COLUMNS_BY_POSITION):
            yield row_of(found[1:])

    def find(self, key: str) -> Row | None:
        """The event with this key, or with this key under the ledger's app (`<app>:<key>`)."""
        row = self.get(key)
        if row is None and not key.startswith(f"{self._app}:"):
            row = self.get(f"{self._app}:{key}")
        return row

    def keys_starting(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` keys that start with `prefix`, in key order (an index range)."""
        if not prefix:
            return []
        with self._guard:
            found = self._db.execute(
                "SELECT key FROM events WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
                (prefix, prefix + "\U0010ffff", limit),
            ).fetchall()
        return [str(key) for (key,) in found if str(key).startswith(prefix)]

    def doubt(self, key: str) -> str | None:
        """Why the event may have been sent twice, when a backend knows (a PostgreSQL queue
        whose instance stopped mid-write); one writer per file has nobody to take over."""
        return None

    def updated_at(self, key: str) -> float | None:
        """When the event's row last changed (seconds since the epoch), if known."""
        with self._guard:
            found = self._db.execute("SELECT updated FROM events WHERE key = ?", (key,)).fetchone()
        return None if found is None or found[0] is None else float(found[0])

    def error_counts(
        self, top: int, statuses: Sequence[Status] = ("rejected", "failed")
    ) -> list[tuple[str, int]]:
        """The `top` most common errors of the events in `statuses`, with their counts."""
        chosen = known_statuses(statuses)
        marks = ", ".join("?" * len(chosen))
        with self._guard:
            found = self._db.execute(
                f"SELECT error, count(*) AS n FROM events WHERE status IN ({marks}) "
                "AND error IS NOT NULL GROUP BY error ORDER BY n DESC, error LIMIT ?",
                (*chosen, top),
            ).fetchall()
        return [(str(error), int(count)) for error, count in found]

    def oldest_unfinished(self) -> Row | None:
        """The unfinished (pending, failed, held) event with the lowest position."""
        return next(self.rows(UNFINISHED), None)

    def request_logs(self) -> Iterator[tuple[str, ...]]:
        """The stored requests (`METHOD URL -> answer`) of every event that made any, one
        tuple per event, in position order, read in pages."""
        after = 0
        while True:
            with self._guard:
                page = self._db.execute(
                    "SELECT position, requests FROM events WHERE position > ? "
                    "AND requests != '[]' ORDER BY position LIMIT ?",
                    (after, PAGE),
                ).fetchall()
            for _, requests in page:
                yield tuple(str(r) for r in json.loads(requests))
            if len(page) < PAGE:
                return
            after = int(page[-1][0])

    # -- what the console reads (pipeline.console.reads) ----------------------------------------

    def problems(self, statuses: Sequence[Status]) -> list[tuple[str, int, Status, str, float]]:
        """(key, position, status, error, updated) of every event in `statuses` (error ''
        when none, updated 0 when unknown), one index range per status."""
        chosen = known_statuses(statuses)
        marks = ", ".join("?" * len(chosen))
        # The partial index serves a query whose terms imply its own: its term is repeated.
        indexed = self._problems_indexed and set(chosen) <= {"failed", "held", "rejected"}
        term = f"{_PROBLEM_TERM} AND " if indexed else ""
        with self._guard:
            return [
                (
                    str(key),
                    int(position),
                    cast(Status, status),
                    str(error or ""),
                    float(updated or 0),
                )
                for status, key, position, error, updated in self._db.execute(
                    f"SELECT status, key, position, error, updated FROM events "
                    f"WHERE {term}status IN ({marks})",
                    chosen,
                )
            ]

    def problem_sums(self, statuses: Sequence[Status]) -> list[ErrorGroup]:
        """The events in `statuses` summed up per status and error (SQL does the counting):
        how many, and their first and last change."""
        chosen = known_statuses(statuses)
        with self._guard:
            found = self._db.execute(
                "SELECT status, coalesce(error, ''), count(*), min(updated), max(updated) "
                f"FROM events WHERE {self._problem_where(chosen)} "
                "GROUP BY status, coalesce(error, '')",
                chosen,
            ).fetchall()
        return error_groups(found)

    def problem_stream(self, status: Status) -> Iterator[tuple[int, str, str]]:
        """(position, key, error or '') of the events in `status`, in position order, read in
        pages (the console stops once it has its samples)."""
        chosen = known_statuses((status,))
        after = 0
        while True:
            with self._guard:
                page = self._db.execute(
                    "SELECT position, key, coalesce(error, '') FROM events "
                    f"WHERE {self._problem_where(chosen)} AND position > ? "
                    "ORDER BY position LIMIT ?",
                    (*chosen, after, PAGE),
                ).fetchall()
            yield from ((int(pos), str(key), str(error)) for pos, key, error in page)
            if len(page) < PAGE:
                return
            after = int(page[-1][0])

    def _problem_where(self, chosen: Sequence[Status]) -> str:
        """`status IN (?, ...)`, led by the partial index's own term when it can serve it (a
        partial index serves a query whose terms imply its own)."""
        marks = ", ".join("?" * len(chosen))
        indexed = self._problems_indexed and set(chosen) <= {"failed", "held", "rejected"}
        return f"{_PROBLEM_TERM + ' AND ' if indexed else ''}status IN ({marks})"

    def latencies(self, since: float, limit: int) -> list[float]:
        """Seconds from arrival to the delivering answer (the row's last change) of the
        delivered events among the last `limit` positions delivered, those delivered at
        `since` or later (an index range: no index on the time of change is kept)."""
        with self._guard:
            found = self._db.execute(
                f"SELECT updated, {self._received} FROM events WHERE status = 'delivered' "
                "ORDER BY position DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            max(0.0, float(updated) - float(received))
            for updated, received in found
            if updated is not None and received is not None and updated >= since
        ]

    def rows_containing(self, needle: bytes, limit: int) -> list[Row]:
        """Up to `limit` events whose line contains `needle`, in position order (a scan: the
        caller parses them to tell whose they are)."""
        with self._guard:
            found = self._db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE instr(line, ?) > 0 ORDER BY position LIMIT ?",
                (needle, limit),
            ).fetchall()
        return [row_of(item) for item in found]

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one consistent state of the ledger (a read transaction), even while
        a writer commits. Only on a reader."""
        if self._lock_fd is not None:
            raise LedgerError(f"ledger {self._path}: snapshot() is for readers")
        with self._guard:
            self._db.execute("BEGIN")
        try:
            yield
        finally:
            with self._guard:
                if self._db.in_transaction:
                    self._db.execute("COMMIT")

    # -- writing --------------------------------------------------------------------------------

    def enqueue(
        self,
        key: str,
        content_hash: str,
        line: bytes,
        *,
        rejected: str | None = None,
        received: float | None = None,
    ) -> int:
        """Store an event as pending at the back of the queue; return its position.

        A key already present gets the new hash and line, attempts 0, no error, no requests or
        warnings, and a new position at the back. Batched: see `flush`.

        `rejected` (the reason) files the event `rejected` at once instead (the service does
        so with an event it can never deliver, such as one over its size limit); `received`
        is when it arrived (default: now).
        """
        with self._guard:
            self._require_writer()
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            position = self._next
            now = self._clock()
            status = "pending" if rejected is None else "rejected"
            self._db.execute(
                _ENQUEUE,
                (
                    key,
                    position,
                    status,
                    content_hash,
                    bytes(line),
                    rejected,
                    now,
                    now if received is None else received,
                ),
            )
            self._next += 1
            self._batched += 1
            if self._batched >= BATCH and not self._atomic:
                self._commit()
            return position

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """The writes inside are kept or discarded together (an SQLite savepoint): one ingest
        request is admitted whole or not at all, even when its group shares a commit with
        other requests. Committed by the next `flush` (or commit) after it, never within."""
        with self._guard:
            self._require_writer()
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("SAVEPOINT admission")
            before = (self._next, self._batched)
            self._atomic += 1
            try:
                yield
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK TO admission")
                    self._db.execute("RELEASE admission")
                else:  # SQLite rolled the whole transaction back (a full disk, an I/O error)
                    self._aborted = True
                self._next, self._batched = before
                raise
            else:
                self._db.execute("RELEASE admission")
            finally:
                self._atomic -= 1

    def record(
        self,
        key: str,
        status: Status,
        attempts: int,
        requests: Sequence[Logged],
        error: str | None,
        warnings: Sequence[str],
        *,
        commit: bool = True,
    ) -> None:
        """File an event's outcome and commit it (with every enqueue before it) at once.

        The line and position stay; a `failed` outcome counts one more failure (`Queued`).
        Raises KeyError for a key that was never enqueued. `commit=False` leaves the commit
        to a later `flush` (the service commits many outcomes at once).
        """
        known_statuses((status,))
        with self._guard:
            self._require_writer()
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            changed = self._db.execute(
                "UPDATE events SET status = ?, attempts = ?, requests = ?, error = ?, "
                "warnings = ?, updated = ?, "
                "failures = failures + (CASE WHEN ? = 'failed' THEN 1 ELSE 0 END) WHERE key = ?",
                (
                    status,
                    attempts,
                    json.dumps([str(request) for request in requests]),
                    error,
                    json.dumps(list(warnings)),
                    self._clock(),
                    status,
                    key,
                ),
            ).rowcount
            if commit:
                self._commit()
        if changed == 0:
            raise KeyError(key)

    def requeue(self, keys: Sequence[str] | None, *, rejected: bool) -> int:
        """Make events pending again, in place (positions unchanged); return how many changed.

        keys None: every failed and held event, and rejected ones too when `rejected`.
        With keys: exactly those keys that are not pending, whatever their status
        (`rejected` is then ignored); unknown keys are ignored. Attempts, requests, error and
        warnings stay as history until the next outcome replaces them.
        """
        with self._guard:
            self._require_writer()
            self._commit()
            now = self._clock()
            changed = 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if keys is None:
                    chosen: tuple[Status, ...] = ("failed", "held")
                    if rejected:
                        chosen += ("rejected",)
                    marks = ", ".join("?" * len(chosen))
                    changed = self._db.execute(
                        "UPDATE events SET status = 'pending', updated = ? "
                        f"WHERE status IN ({marks})",
                        (now, *chosen),
                    ).rowcount
                else:
                    unique = list(dict.fromkeys(keys))
                    for start in range(0, len(unique), _KEYS_PER_STATEMENT):
                        chunk = unique[start : start + _KEYS_PER_STATEMENT]
                        marks = ", ".join("?" * len(chunk))
                        changed += self._db.execute(
                            "UPDATE events SET status = 'pending', updated = ? "
                            f"WHERE status != 'pending' AND key IN ({marks})",
                            (now, *chunk),
                        ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return changed

    def queue_page(self, after: int, limit: int) -> list[Queued]:
        """Up to `limit` unfinished events with a position above `after`, in position order,
        with when each was received and last changed and how often it failed."""
        columns = f"{_COLUMNS_BY_POSITION}, {self._received}, updated, {self._failures}"
        found: list[tuple[Any, ...]] = []
        with self._guard:
            for status in UNFINISHED:
                found.extend(
                    self._db.execute(
                        f"SELECT {columns} FROM events WHERE status = ? AND position > ? "
                        "ORDER BY position LIMIT ?",
                        (status, after, limit),
                    ).fetchall()
                )
        found.sort(key=itemgetter(0))
        return [
            Queued(
                row_of(item[1:10]),
                None if item[10] is None else float(item[10]),
                None if item[11] is None else float(item[11]),
                int(item[12]),
            )
            for item in found[:limit]
        ]

    def oldest_received(self) -> float | None:
        """When the unfinished event with the lowest position was received (else last changed)."""
        with self._guard:
            firsts = [
                self._db.execute(
                    f"SELECT position, coalesce({self._received}, updated) FROM events "
                    "WHERE status = ? ORDER BY position LIMIT 1",
                    (status,),
                ).fetchone()
                for status in UNFINISHED
            ]
        present = [first for first in firsts if first is not None]
        if not present:
            return None
        when = min(present, key=itemgetter(0))[1]
        return None if when is None else float(when)

    def touch(self) -> None:
        """Write one small row (meta `checked`: now), left for `flush` to commit: whether that
        commit succeeds tells whether the ledger takes writes again (after a full disk, say).
        SQLite writes nothing for a row updated to the value it holds, so the value changes."""
        with self._guard:
            self._require_writer()
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO meta (name, value) VALUES ('checked', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (repr(time.time()),),
            )

    def forget_lines(self, before: float, limit: int = 5000) -> int:
        """Retention: drop the line of up to `limit` delivered or rejected events last changed
        before `before` (seconds since the epoch), keeping their key, hash and status, so a
        late retry of one is still known. Committed at once; returns how many changed."""
        with self._guard:
            self._require_writer()
            self._commit()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                changed = self._db.execute(
                    "UPDATE events SET line = x'', forgotten = ? WHERE rowid IN (SELECT rowid "
                    "FROM events WHERE status IN ('delivered', 'rejected') AND updated < ? "
                    "AND forgotten IS NULL LIMIT ?)",
                    (self._clock(), before, limit),
                ).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return int(changed)

    def flush(self) -> None:
        """Commit the batched enqueues. Raises LedgerError when SQLite rolled back the
        transaction they were in (see `atomic`): they are not on disk, and no caller may be
        told otherwise."""
        with self._guard:
            self._require_writer()
            if self._aborted:
                self._aborted = False
                self._next = self._top() + 1
                raise LedgerError(
                    f"ledger {self._path}: SQLite rolled back uncommitted writes after an error"
                )
            self._commit()

    def _top(self) -> int:
        (top,) = self._db.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
        return int(top)

    def rollback(self) -> None:
        """Discard what is not committed yet (after a commit failed, say on a full disk)."""
        with self._guard:
            self._require_writer()
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._batched = 0

    def state(self, key: str) -> tuple[Status, str] | None:
        """The event's status and content hash, if the ledger has it (no line is read)."""
        with self._guard:
            found = self._db.execute(
                "SELECT status, hash FROM events WHERE key = ?", (key,)
            ).fetchone()
        return None if found is None else (cast(Status, found[0]), str(found[1]))

    def states(self, keys: Sequence[str]) -> dict[str, tuple[Status, str]]:
        """`state` of many keys at once (those the ledger has), a few statements in all."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, tuple[Status, str]] = {}
        with self._guard:
            for start in range(0, len(unique), _KEYS_PER_STATEMENT):
                chunk = unique[start : start + _KEYS_PER_STATEMENT]
                marks = ", ".join("?" * len(chunk))
                for key, status, content_hash in self._db.execute(
                    f"SELECT key, status, hash FROM events WHERE key IN ({marks})", chunk
                ):
                    found[str(key)] = (cast(Status, status), str(content_hash))
        return found

    # -- the DeliveryQueue interface (pipeline.delivery.queue) -----------------------------------

    def known(self, keys: Sequence[str]) -> dict[str, Known]:
        """What the ledger holds under those of `keys` it has, a few statements in all."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, Known] = {}
        with self._guard:
            for start in range(0, len(unique), _KEYS_PER_STATEMENT):
                chunk = unique[start : start + _KEYS_PER_STATEMENT]
                marks = ", ".join("?" * len(chunk))
                for key, status, content_hash, position in self._db.execute(
                    f"SELECT key, status, hash, position FROM events WHERE key IN ({marks})",
                    chunk,
                ):
                    found[str(key)] = Known(cast(Status, status), str(content_hash), int(position))
        return found

    def admit(
        self,
        arrivals: Sequence[Arrival],
        *,
        received: float | None = None,
        retry_rejected: bool = False,
    ) -> list[Admitted]:
        """See `DeliveryQueue.admit`: one savepoint (`atomic`), one lookup for all keys."""
        with self._guard, self.atomic():
            held = self.known([arrival.key for arrival in arrivals])
            return [
                self._admit_one(arrival, held, received, retry_rejected) for arrival in arrivals
            ]

    def _admit_one(
        self,
        arrival: Arrival,
        held: dict[str, Known],
        received: float | None,
        retry_rejected: bool,
    ) -> Admitted:
        before = held.get(arrival.key)
        verdict = admission(before, arrival, retry_rejected=retry_rejected)
        if verdict is Admit.REPEATED and before is not None:
            arrival = Arrival(
                repeat_key(arrival.key, arrival.content_hash),
                arrival.content_hash,
                arrival.line,
                repeat_reason(before.position),
            )
            before = held.get(arrival.key) or self.known([arrival.key]).get(arrival.key)
            if before is not None and before.content_hash == arrival.content_hash:
                verdict = Admit.KNOWN  # this later version was stored before: a retry of it
        if verdict is Admit.KNOWN and before is not None:
            return Admitted(arrival.key, before.position, verdict, before)
        position = self.enqueue(
            arrival.key,
            arrival.content_hash,
            arrival.line,
            rejected=arrival.rejected,
            received=received,
        )
        status: Status = "pending" if arrival.rejected is None else "rejected"
        held[arrival.key] = Known(status, arrival.content_hash, position)
        return Admitted(arrival.key, position, verdict, before, arrival.rejected)

    def take(self, after: int, limit: int) -> list[Queued]:
        """See `DeliveryQueue.take` (one writer per file: every lane is this writer's)."""
        return self.queue_page(after, limit)

    def file(self, records: Sequence[Record]) -> int:
        """See `DeliveryQueue.file`; staged until `commit`."""
        finished = 0
        with self._guard:
            self._require_writer()
            now = self.known([record.key for record in records])
            for record in records:
                current = now.get(record.key)
                status = filed_as(current, record)
                if current is None:  # its row went with a rolled-back batch: store it again
                    position = self.enqueue(record.key, record.content_hash, record.line)
                    current = now[record.key] = Known("pending", record.content_hash, position)
                if status is None:
                    continue
                self.record(
                    record.key,
                    status,
                    record.attempts,
                    record.requests,
                    record.error,
                    record.warnings,
                    commit=False,
                )
                now[record.key] = Known(status, record.content_hash, current.position)
                finished += status in FINISHED
        return finished

    def commit(self) -> None:
        """See `DeliveryQueue.commit` (`flush`)."""
        self.flush()

    # -- internals ------------------------------------------------------------------------------

    def _require_writer(self) -> None:
        if self._lock_fd is None:
            raise LedgerError(f"ledger {self._path} is open read-only")

    def _commit(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._batched = 0

    def _ordered(self, statuses: Sequence[Status], columns: str) -> Iterator[tuple[Any, ...]]:
        """Rows of `statuses` (first column: position) in position order, up to the current
        back of the queue; one index range per status, merged."""
        with self._guard:
            (top,) = self._db.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
        streams = [self._stream(status, columns, int(top)) for status in dict.fromkeys(statuses)]
        last = 0
        for found in heapq.merge(*streams, key=itemgetter(0)):
            if found[0] > last:  # a row whose status changed meanwhile may come up twice
                last = found[0]
                yield found

    def _stream(self, status: Status, columns: str, top: int) -> Iterator[tuple[Any, ...]]:
        after = 0
        while True:
            with self._guard:
                page = self._db.execute(
                    f"SELECT {columns} FROM events WHERE status = ? AND position > ? "
                    "AND position <= ? ORDER BY position LIMIT ?",
                    (status, after, top, PAGE),
                ).fetchall()
            yield from page
            if len(page) < PAGE:
                return
            after = int(page[-1][0])


def row_of(found: Sequence[Any]) -> Row:
    """A stored row (key, position, status, hash, line, attempts, requests, error, warnings)
    as a `Row`; every backend stores these columns alike."""
    key, position, status, content_hash, line, attempts, requests, error, warnings = found
    return Row(
        key=str(key),
        position=int(position),
        status=cast(Status, status),
        content_hash=str(content_hash),
        line=bytes(line),
        attempts=int(attempts),
        requests=tuple(str(r) for r in json.loads(requests)),
        error=None if error is None else str(error),
        warnings=tuple(str(w) for w in json.loads(warnings)),
    )


def known_statuses(statuses: Sequence[str]) -> tuple[Status, ...]:
    """`statuses` checked against the status table (ValueError names an unknown one)."""
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise ValueError(f"unknown status {unknown[0]!r}: expected one of {', '.join(STATUSES)}")
    return tuple(cast(Status, s) for s in statuses)


def ledger_files(path: Path) -> tuple[Path, ...]:
    """Every file a ledger at `path` owns (the file, its lock, SQLite's sidecars), under the
    name given and under the real name behind any symlink: what `--out` must never name."""
    bases = dict.fromkeys((Path(path), _real(path)))
    return tuple(
        Path(f"{base}{suffix}") for base in bases for suffix in ("", LOCK_SUFFIX, *SQLITE_SIDECARS)
    )


def _real(path: Path) -> Path:
    """The file behind `path`, symlinks resolved (as far as they exist): the one name the lock
    and SQLite's sidecars are derived from, so that no alias gets a lock of its own."""
    return Path(os.path.realpath(path))


def _mount_of(path: Path) -> Path:
    """The mount point holding `path`: hard links never leave their file system."""
    place = _real(path)
    while not os.path.ismount(place) and place != place.parent:
        place = place.parent
    return place


def _uri(path: Path, query: str) -> str:
    return f"{_real(path).as_uri()}?{query}"


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(_real(path), isolation_level=None, check_same_thread=False)


def _read_only(path: Path, *, immutable: bool) -> sqlite3.Connection:
    """A read-only connection to the ledger at `path`, proved by a first read.

    `immutable`: read the file as it is, touching nothing (no `-shm`/`-wal` appear). Otherwise
    the WAL is honoured, which needs a `-shm` SQLite may have to create; where it cannot (a
    read-only folder), the file alone is read immutable, but only when no `-wal` holds commits
    it lacks: reading it without them would show an old state as if it were current.
    """
    try:
        return _first_read(path, "mode=ro&immutable=1" if immutable else "mode=ro")
    except sqlite3.OperationalError as problem:
        if immutable or problem.sqlite_errorcode & 0xFF not in _CANNOT_OPEN:
            raise LedgerError(f"cannot read ledger {path}: {problem}") from problem
    except sqlite3.DatabaseError as problem:
        raise _damaged(path, str(problem)) from problem
    wal = Path(f"{_real(path)}-wal")
    with contextlib.suppress(FileNotFoundError):
        if wal.stat().st_size > 0:
            raise LedgerError(
                f"cannot read ledger {path}: this user cannot create {path.name}-shm beside it, "
                f"and {wal.name} holds commits the ledger file lacks (a writer is running or "
                f"was stopped); read it as the user that writes it, or copy {path.name} and "
                f"{wal.name} to a writable folder and read the copy"
            )
    try:
        return _first_read(path, "mode=ro&immutable=1")
    except sqlite3.OperationalError as problem:
        raise LedgerError(f"cannot read ledger {path}: {problem}") from problem
    except sqlite3.DatabaseError as problem:
        raise _damaged(path, str(problem)) from problem


# SQLite's primary codes for "cannot open" and "read-only": what opening a WAL database gives
# when its -shm cannot be created.
_CANNOT_OPEN: Final = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY})


def _first_read(path: Path, query: str) -> sqlite3.Connection:
    db = sqlite3.connect(_uri(path, query), uri=True, isolation_level=None, check_same_thread=False)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def _check_intact(db: sqlite3.Connection, path: Path) -> None:
    """LedgerError when SQLite finds the file damaged. `quick_check` reads every page once
    (cost linear in the file, no index cross-check), so a damaged page is found at open, in
    one line, rather than as a crash midway through a command or a service that runs "ok"
    and delivers nothing."""
    try:
        found = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.OperationalError as problem:
        raise LedgerError(f"cannot read ledger {path}: {problem}") from problem
    except sqlite3.DatabaseError as problem:
        raise _damaged(path, str(problem)) from problem
    verdict = "" if found is None else str(found[0])
    if verdict != "ok":
        detail = [line for line in verdict.splitlines() if line and not line.startswith("***")]
        raise _damaged(path, "; ".join(detail) or "no verdict")


@contextlib.contextmanager
def sqlite_errors_as_ledger_errors(path: Path) -> Iterator[None]:
    """Inside, an SQLite error is a one-line LedgerError naming the ledger: damage the check at
    open cannot see (an index that disagrees with its table, a page damaged after the check)
    surfaces midway through a command, and must not end it in a traceback."""
    try:
        yield
    except sqlite3.OperationalError as problem:
        raise LedgerError(f"cannot read ledger {path}: {problem}") from problem
    except sqlite3.DatabaseError as problem:
        raise _damaged(path, str(problem)) from problem


def _damaged(path: Path, detail: str) -> LedgerError:
    return LedgerError(
        f"ledger {path} is damaged (SQLite: {detail}): left untouched; restore it from a "
        "backup, or use another --ledger (sqlite3's .recover can salvage the rows left)"
    )


def _check_app(path: Path, found: str | None, app: str) -> None:
    if found is not None and found != app:
        raise LedgerError(f"ledger {path} belongs to app {found}, not {app}: use another --ledger")


def _inspect(path: Path) -> str | None:
    """The app of the ledger at `path`; None when there is no file or it is empty (a new
    ledger). Anything else raises LedgerError. Reads only: nothing is written, not even
    SQLite's sidecar files when they are absent (a WAL file with no -wal is opened immutable).
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as problem:
        raise LedgerError(f"cannot open ledger {path}: {problem.strerror}") from problem
    if stat.S_ISDIR(info.st_mode):
        raise LedgerError(f"{path} is a folder, not a ledger: use another --ledger")
    if not stat.S_ISREG(info.st_mode):
        raise LedgerError(f"{path} is not a regular file, not a ledger: use another --ledger")
    if info.st_nlink > 1:
        raise LedgerError(
            f"ledger {path} has {info.st_nlink} hard links: a writer through another name "
            "would not see this one's lock (and SQLite would give it a -wal of its own); "
            f"remove the other names, keeping one (find {_mount_of(path)} -xdev -samefile "
            f"{path} lists them), or use another --ledger"
        )
    if info.st_size == 0:
        return None
    try:
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as problem:
        raise LedgerError(f"cannot read ledger {path}: {problem.strerror}") from problem
    if not header.startswith(SQLITE_MAGIC):
        raise LedgerError(
            f"{path} is not a ledger (not an SQLite file): left untouched; use another --ledger"
        )
    wal = len(header) > 18 and header[18] == 2
    db = _read_only(path, immutable=wal and not Path(f"{_real(path)}-wal").exists())
    try:
        return _marker(db, path)
    except sqlite3.OperationalError as problem:
        raise LedgerError(f"cannot read ledger {path}: {problem}") from problem
    except sqlite3.DatabaseError as problem:
        raise _damaged(path, str(problem)) from problem
    finally:
        db.close()


def _marker(db: sqlite3.Connection, path: Path) -> str:
    """The app named by a ledger's `meta` table; LedgerError if it is not a ledger of ours."""
    foreign = LedgerError(
        f"{path} is not a usercom ledger (an SQLite file of something else): left untouched; "
        "use another --ledger"
    )
    tables = {str(name) for (name,) in db.execute("SELECT name FROM sqlite_master")}
    if "meta" not in tables:
        if "events" in tables:
            columns = {str(c[1]) for c in db.execute("PRAGMA table_info(events)")}
            if columns >= _OLD_COLUMNS:
                raise LedgerError(
                    f"{path} is a ledger of an older usercom (format 1), which cannot be "
                    "resumed: use a new --ledger"
                )
        raise foreign
    try:
        meta = {str(n): str(v) for n, v in db.execute("SELECT name, value FROM meta")}
    except sqlite3.Error:
        raise foreign from None
    if meta.get("kind") != KIND:
        raise foreign
    if meta.get("version") != VERSION:
        raise LedgerError(
            f"{path} is a usercom ledger of format {meta.get('version')}, this usercom "
            f"reads format {VERSION}: use another --ledger"
        )
    app = meta.get("app")
    if not app:
        raise LedgerError(f"{path} is a usercom ledger with no app: use another --ledger")
    return app


def _open_locked(path: Path, app: str, *, durable: bool = False) -> sqlite3.Connection:
    """The writer's connection, once the lock is held: the file inspected again (no other
    writer can change it now), created when new, switched to WAL."""
    found = _inspect(path)
    _check_app(path, found, app)
    try:
        db = _connect(path)
    except sqlite3.Error as problem:
        raise LedgerError(f"cannot open ledger {path}: {problem}") from problem
    try:
        if found is not None:
            _check_intact(db, path)
        _prepare(db, path, app, new=found is None, durable=durable)
    except BaseException:
        db.close()
        raise
    return db


def _prepare(
    db: sqlite3.Connection, path: Path, app: str, *, new: bool, durable: bool = False
) -> None:
    try:
        if new:
            _create(db, path, app)
        present = {str(c[1]) for c in db.execute("PRAGMA table_info(events)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in present:
                db.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")
        for statement in _ADDED_INDEXES:
            db.execute(statement)
        mode = str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    except sqlite3.Error as problem:
        raise LedgerError(f"cannot open ledger {path}: {problem}") from problem
    if mode.lower() != "wal":
        raise LedgerError(f"cannot use ledger {path}: its folder does not support WAL")


def _create(db: sqlite3.Connection, path: Path, app: str) -> None:
    """The schema and meta rows of a new ledger, in one transaction (rollback journal), so
    a crash leaves an empty file, which the next writer takes as new."""
    if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise LedgerError(f"{path} changed while it was opened: use another --ledger")
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA:
            db.execute(statement)
        db.executemany(
            "INSERT INTO meta (name, value) VALUES (?, ?)",
            [("kind", KIND), ("version", VERSION), ("app", app)],
        )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _lock(path: Path) -> int:
    """Take the writer lock of `path` (an flock on `<real file>.lock`) and write our pid in it."""
    lock_path = Path(f"{_real(path)}{LOCK_SUFFIX}")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as problem:
        raise LedgerError(_cannot_lock(path, lock_path, problem)) from problem
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as problem:
        if problem.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise LedgerError(f"cannot lock ledger {path}: {problem.strerror}") from problem
        try:
            raise LedgerBusy(_holder(fd)) from None
        finally:
            os.close(fd)
    try:
        mine = f"{os.getpid()}\n".encode()
        os.pwrite(fd, mine, 0)  # then truncate: a reader never sees an empty file mid-write
        os.ftruncate(fd, len(mine))
    except OSError as problem:
        _unlock(fd)
        raise LedgerError(f"cannot lock ledger {path}: {problem.strerror}") from problem
    return fd


def _lock_the_file(path: Path) -> int:
    """An exclusive flock on the ledger file itself (created empty when new, which counts as
    new): the lock file names the holder, but it is found by name, and a name can be removed
    or renamed (`rm L.lock`, `mv L M` with its -wal and -shm) while a writer runs; the file's
    own lock moves with its inode.

    On Linux an flock is independent of the POSIX locks SQLite takes on the same file. But
    closing any descriptor of a file drops every POSIX lock the process holds on it, so the
    descriptor returned must stay open until SQLite's connection is closed.
    """
    real = _real(path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as problem:
        raise LedgerError(f"cannot open ledger {path}: {problem.strerror}") from problem
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as problem:
        holder = _flock_holder(os.fstat(fd))
        os.close(fd)  # no SQLite connection of ours is open on it yet
        if problem.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LedgerError(f"cannot lock ledger {path}: {problem.strerror}") from problem
        raise LedgerBusy(holder) from None
    return fd


def _flock_holder(info: os.stat_result) -> int | None:
    """The pid holding an flock on the file `info` describes, from /proc/locks (Linux); None
    where that is not known."""
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode:
                return int(fields[4])
    return None


def _cannot_lock(path: Path, lock_path: Path, problem: OSError) -> str:
    """Why the lock file cannot be opened, said as what the user can change."""
    fix = "choose a --ledger in a folder you can write"
    if lock_path.exists():
        return (
            f"cannot use ledger {path}: its lock file {lock_path} cannot be opened for writing "
            f"({problem.strerror}); run as the user that owns it, or {fix}"
        )
    folder = lock_path.parent
    reasons = {
        errno.EACCES: "this user may not write there",
        errno.EPERM: "this user may not write there",
        errno.EROFS: "it is on a read-only file system",
        errno.ENOENT: "the system allows no new files there"
        if folder.is_dir()
        else "it does not exist",
    }
    reason = reasons.get(problem.errno or 0, problem.strerror or str(problem))
    return f"cannot use ledger {path}: cannot create files in {folder} ({reason}); {fix}"


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)  # releases the flock


def _holder(fd: int) -> int | None:
    """The pid written in a lock file by its holder. The holder writes it just after taking
    the lock, and a stale pid of a dead holder may still be there: retry briefly."""
    for _ in range(40):
        first = os.pread(fd, 64, 0).split(b"\n", 1)[0].strip()
        if first.isdigit() and int(first) > 0 and _alive(int(first)):
            return int(first)
        time.sleep(0.005)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
