"""The ledger in PostgreSQL (DELIVERY §7): the same rows and promises as the SQLite ledger
(`pipeline.delivery.ledger`), in tables of their own schema, for any number of writers.

`PgLedger` answers every public method of `Ledger`, so the commands and the service use it
as they use the file. What differs, and why:

- **Many writers, no lock**: there is no one-writer lock; what keeps writers apart is the
  database. **Positions** per app come from a counter row (`apps.top`) locked by the first
  enqueue of a transaction and written back at its commit, so positions increase in commit
  order whichever process stored the events, and a transaction rolled back takes none.
- **Readers** run in autocommit (every statement sees what is committed); `snapshot` is one
  REPEATABLE READ transaction.
- **Errors**: a database error is a `LedgerError` (the service's "ledger trouble": the request
  is answered 503, nothing acknowledged) whose text masks the URI's password. As in SQLite,
  a transaction the server aborted makes the next `flush` raise: its events are not stored.
- A reader opened without an app (`usercom report URI`) sees every app the schema holds.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from pipeline.delivery.ledger import (
    PAGE,
    STATUSES,
    UNFINISHED,
    ErrorGroup,
    Ledger,
    LedgerError,
    Queued,
    Row,
    Status,
    error_groups,
    known_statuses,
    row_of,
)
from pipeline.delivery.outcome import Logged
from pipeline.delivery.pg import budget, lanes
from pipeline.delivery.pg.fence import LeaseBook, as_stored
from pipeline.delivery.pg.location import PgLocation, masked, scrubbed
from pipeline.delivery.pg.text import hold_storable_text, storable
from pipeline.delivery.queue import Admitted, Arrival, Known, Record, readiness

if TYPE_CHECKING:
    import psycopg

__all__ = ["INSTALL", "VERSION", "PgLedger"]

KIND: Final = "usercom-ledger"
VERSION: Final = 1
INSTALL: Final = "pip install 'usercom-pipeline[postgres]'"
CONNECT_TIMEOUT: Final = 10  # seconds, unless the URI says otherwise
BATCH: Final = 1000  # enqueues per committed transaction, as in the SQLite ledger
KEEP_ROWS_S: Final = 30 * 86400.0  # a finished row outlives its body by this much
_COLUMNS: Final = "key, position, status, hash, line, attempts, requests, error, warnings"
_E_COLUMNS: Final = ", ".join(f"e.{column.strip()}" for column in _COLUMNS.split(","))

_SCHEMA: Final = (
    "CREATE TABLE meta (name text PRIMARY KEY, value text NOT NULL)",
    # One row per app: the last position handed out (locked while a transaction enqueues).
    "CREATE TABLE apps (app text PRIMARY KEY, top bigint NOT NULL DEFAULT 0)",
    """CREATE TABLE events (
        key text COLLATE "C" PRIMARY KEY,
        app text NOT NULL,
        position bigint NOT NULL,
        status text NOT NULL,
        hash text NOT NULL,
        line bytea NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        requests text NOT NULL DEFAULT '[]',
        error text,
        warnings text NOT NULL DEFAULT '[]',
        updated double precision,
        received double precision,
        failures integer NOT NULL DEFAULT 0,
        forgotten double precision,
        lane text NOT NULL DEFAULT '',
        company text,
        doubt text,
        UNIQUE (app, position)
    )""",
    "CREATE INDEX events_status ON events (app, status, position)",
    # A lane's unfinished events in order (what an instance holding its lease delivers).
    "CREATE INDEX events_lane ON events (app, lane, position) "
    "WHERE status IN ('pending', 'failed', 'held')",
    "CREATE INDEX events_company ON events (app, company) "
    "WHERE company IS NOT NULL AND status IN ('pending', 'failed', 'held')",
    # One compact row per lane (pipeline/delivery/pg/lanes.py): leases are claimed here.
    """CREATE TABLE lanes (
        app text NOT NULL,
        lane text NOT NULL,
        owner text,
        until timestamptz,
        ready boolean NOT NULL DEFAULT true,
        PRIMARY KEY (app, lane)
    )""",
    "CREATE INDEX lanes_ready ON lanes (app) WHERE ready",
    "CREATE INDEX lanes_owner ON lanes (owner) WHERE owner IS NOT NULL",
    *budget.create_sql(),
    # Retention's scans: finished rows that still have their body, oldest change first; and
    # rows whose body went long ago (deleted in bounded batches).
    "CREATE INDEX events_retention ON events (updated) "
    "WHERE forgotten IS NULL AND status IN ('delivered', 'rejected')",
    "CREATE INDEX events_forgotten ON events (forgotten) WHERE forgotten IS NOT NULL",
)

_ENQUEUE: Final = """
INSERT INTO events
    (key, app, position, status, hash, line, error, updated, received, lane, company)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (key) DO UPDATE SET
    lane = excluded.lane,
    company = excluded.company,
    doubt = NULL,
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


def _driver() -> Any:
    """psycopg, or the one line that says how to install it."""
    try:
        import psycopg
    except ImportError as missing:
        raise LedgerError(f"a PostgreSQL ledger needs psycopg 3: {INSTALL}") from missing
    return psycopg


def _words(location: PgLocation, problem: BaseException) -> str:
    """A driver's message on one line, with the URI's password never in it."""
    text = " ".join(str(problem).split()) or type(problem).__name__
    return scrubbed(text.replace(location.uri, masked(location.uri)), location.uri)


def driver() -> Any:
    """psycopg (for its error classes), or the LedgerError with the install line."""
    return _driver()


def connect_at(location: PgLocation) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection of its own to the ledger's schema (leases, the shared budget)."""
    db = _connect(location)
    db.execute(f"SET search_path TO {location.schema}")
    return db


def _connect(location: PgLocation) -> psycopg.Connection[tuple[Any, ...]]:
    driver = _driver()
    extra: dict[str, Any] = {}
    if "connect_timeout" not in location.uri:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    try:
        db = driver.connect(location.uri, autocommit=True, **extra)
    except driver.Error as problem:
        raise LedgerError(
            f"cannot open the PostgreSQL ledger {location.shown}: {_words(location, problem)}; "
            "check the URI, the password (PGPASSWORD or ~/.pgpass) and that the server is "
            "reachable"
        ) from problem
    hold_storable_text(db)
    return cast("psycopg.Connection[tuple[Any, ...]]", db)


class PgLedger(Ledger):
    """A ledger in a PostgreSQL schema, opened by `open_writer` or `open_reader`."""

    def __init__(
        self,
        location: PgLocation,
        app: str | None,
        db: psycopg.Connection[tuple[Any, ...]],
        *,
        writable: bool,
        leasing: Leasing | None = None,
    ) -> None:
        """Use `open_pg_writer` or `open_pg_reader`."""
        self._leasing = leasing or Leasing()
        self._leases = LeaseBook(self._leasing.ttl, self._leasing.clock)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._claimed_at = -math.inf
        self._renewer: _Renewer | None = None
        self._location = location
        self._only = app
        self._pg = db
        self._can_write = writable
        self._closed = False
        self._in_tx = False
        self._positions = False  # this transaction holds the app's position counter
        self._next = 1
        self._batched = 0
        self._atomic = 0
        self._aborted = False
        self._savepoints = 0
        # The Ledger's own admit/file take this: one thread at a time on the connection.
        self._guard = threading.RLock()
        self._rows: list[tuple[tuple[Any, ...], str | None]] | None = None  # see `admit`

    # -- opening and closing ------------------------------------------------------------------

    @classmethod
    def open_pg_writer(
        cls, location: PgLocation, app: str, leasing: Leasing | None = None
    ) -> PgLedger:
        """Open the ledger at `location` for `app`, creating its schema on first use.
        Every commit is durable (PostgreSQL's `synchronous_commit` as the server sets it)."""
        db = _connect(location)
        try:
            _prepare(db, location, create=True)
            db.execute("INSERT INTO apps (app) VALUES (%s) ON CONFLICT (app) DO NOTHING", (app,))
            return cls(location, app, db, writable=True, leasing=leasing)
        except BaseException:
            db.close()
            raise

    @classmethod
    def open_pg_reader(cls, location: PgLocation, app: str | None = None) -> PgLedger:
        """Open an existing ledger for reading (every app it holds, unless `app`)."""
        db = _connect(location)
        try:
            _prepare(db, location, create=False)
            return cls(location, app, db, writable=False)
        except BaseException:
            db.close()
            raise

    @property
    def app(self) -> str:
        if self._only is not None:
            return self._only
        return ", ".join(self._apps()) or "none yet"

    @property
    def path(self) -> Path:
        raise LedgerError(f"the ledger {self._location.shown} is a database, not a file")

    @property
    def where(self) -> str:
        """The URI (password masked) and the --pg-schema, as a command line gives them."""
        return str(self._location)

    @property
    def location(self) -> PgLocation:
        return self._location

    @property
    def writable(self) -> bool:
        return self._can_write

    @property
    def owner(self) -> str:
        """This writer's name in the lanes table (host, pid and a random part)."""
        return self._owner

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._can_write and not self._aborted:
                self._commit()
        finally:
            try:
                if self._renewer is not None:
                    self._renewer.stop()
                    with contextlib.suppress(LedgerError), self._errors():
                        lanes.release_all(self._pg, self._writer_app(), self._owner)
            finally:
                self._pg.close()

    # -- reading --------------------------------------------------------------------------------

    def get(self, key: str) -> Row | None:
        found = self._one(f"SELECT {_COLUMNS} FROM events WHERE key = %s{self._and_app}", key)
        return None if found is None else row_of(found)

    def unfinished(self) -> Iterator[Row]:
        return self.rows(UNFINISHED)

    def lines(self, statuses: Sequence[Status]) -> Iterator[bytes]:
        for found in self._ordered(statuses, "line, forgotten"):
            if found[2] is None:
                yield bytes(found[1])

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for status, count in self._all(
            f"SELECT status, count(*) FROM events WHERE true{self._and_app} GROUP BY status"
        ):
            result[str(status)] = int(count)
        return result

    def rows(self, statuses: Sequence[Status] | None = None) -> Iterator[Row]:
        chosen = STATUSES if statuses is None else statuses
        for found in self._ordered(chosen, _COLUMNS):
            yield row_of(found[1:])

    def find(self, key: str) -> Row | None:
        row = self.get(key)
        apps = [self._only] if self._only is not None else self._apps()
        for app in apps:
            if row is None and not key.startswith(f"{app}:"):
                row = self.get(f"{app}:{key}")
        return row

    def keys_starting(self, prefix: str, limit: int = 2) -> list[str]:
        if not prefix:
            return []
        found = self._all(
            'SELECT key FROM events WHERE key >= %s AND key < %s COLLATE "C"'
            f"{self._and_app} ORDER BY key LIMIT %s",
            prefix,
            prefix + "\U0010ffff",
            *self._app_args,
            limit,
            with_app=False,
        )
        return [str(key) for (key,) in found if str(key).startswith(prefix)]

    def updated_at(self, key: str) -> float | None:
        found = self._one(f"SELECT updated FROM events WHERE key = %s{self._and_app}", key)
        return None if found is None or found[0] is None else float(found[0])

    def error_counts(
        self, top: int, statuses: Sequence[Status] = ("rejected", "failed")
    ) -> list[tuple[str, int]]:
        found = self._all(
            "SELECT error, count(*) AS n FROM events WHERE status = ANY(%s) "
            f"AND error IS NOT NULL{self._and_app} GROUP BY error ORDER BY n DESC, error "
            "LIMIT %s",
            list(known_statuses(statuses)),
            *self._app_args,
            top,
            with_app=False,
        )
        return [(str(error), int(count)) for error, count in found]

    def oldest_unfinished(self) -> Row | None:
        return next(self.rows(UNFINISHED), None)

    def request_logs(self) -> Iterator[tuple[str, ...]]:
        for found in self._ordered(STATUSES, "requests", where="requests != '[]'"):
            yield tuple(str(r) for r in json.loads(found[1]))

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        if self._can_write:
            raise LedgerError(f"ledger {self.where}: snapshot() is for readers")
        with self._errors():
            self._pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            with self._errors():
                self._pg.execute("COMMIT")

    def queue_page(self, after: int, limit: int) -> list[Queued]:
        found = self._all(
            f"SELECT position, {_COLUMNS}, received, updated, failures FROM events "
            f"WHERE status = ANY(%s) AND position > %s{self._and_app} ORDER BY position LIMIT %s",
            list(UNFINISHED),
            after,
            *self._app_args,
            limit,
            with_app=False,
        )
        return [
            Queued(
                row_of(item[1:10]),
                None if item[10] is None else float(item[10]),
                None if item[11] is None else float(item[11]),
                int(item[12]),
            )
            for item in found
        ]

    def oldest_received(self) -> float | None:
        found = self._one(
            "SELECT coalesce(received, updated) FROM events WHERE status = ANY(%s)"
            f"{self._and_app} ORDER BY position LIMIT 1",
            list(UNFINISHED),
        )
        return None if found is None or found[0] is None else float(found[0])

    # -- what the console reads (pipeline.console.reads), as the SQLite ledger answers it ------

    def problems(self, statuses: Sequence[Status]) -> list[tuple[str, int, Status, str, float]]:
        found = self._all(
            "SELECT status, key, position, error, updated FROM events WHERE status = ANY(%s)"
            f"{self._and_app}",
            list(known_statuses(statuses)),
        )
        return [
            (str(key), int(position), cast(Status, status), str(error or ""), float(updated or 0))
            for status, key, position, error, updated in found
        ]

    def problem_sums(self, statuses: Sequence[Status]) -> list[ErrorGroup]:
        found = self._all(
            "SELECT status, coalesce(error, ''), count(*), min(updated), max(updated) "
            f"FROM events WHERE status = ANY(%s){self._and_app} "
            "GROUP BY status, coalesce(error, '')",
            list(known_statuses(statuses)),
        )
        return error_groups(found)

    def problem_stream(self, status: Status) -> Iterator[tuple[int, str, str]]:
        known_statuses((status,))
        after = 0
        while True:
            page = self._all(
                "SELECT position, key, coalesce(error, '') FROM events WHERE status = %s "
                f"AND position > %s{self._and_app} ORDER BY position LIMIT %s",
                status,
                after,
                *self._app_args,
                PAGE,
                with_app=False,
            )
            yield from ((int(pos), str(key), str(error)) for pos, key, error in page)
            if len(page) < PAGE:
                return
            after = int(page[-1][0])

    def latencies(self, since: float, limit: int) -> list[float]:
        found = self._all(
            f"SELECT updated, received FROM events WHERE status = 'delivered'{self._and_app} "
            "ORDER BY position DESC LIMIT %s",
            *self._app_args,
            limit,
            with_app=False,
        )
        return [
            max(0.0, float(updated) - float(received))
            for updated, received in found
            if updated is not None and received is not None and updated >= since
        ]

    def rows_containing(self, needle: bytes, limit: int) -> list[Row]:
        found = self._all(
            f"SELECT {_COLUMNS} FROM events WHERE position(%s IN line) > 0{self._and_app} "
            "ORDER BY position LIMIT %s",
            needle,
            *self._app_args,
            limit,
            with_app=False,
        )
        return [row_of(item) for item in found]

    def state(self, key: str) -> tuple[Status, str] | None:
        found = self._one(f"SELECT status, hash FROM events WHERE key = %s{self._and_app}", key)
        return None if found is None else (cast(Status, found[0]), str(found[1]))

    def states(self, keys: Sequence[str]) -> dict[str, tuple[Status, str]]:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        found = self._all(
            "SELECT key, status, hash FROM events WHERE key = ANY(%s)", unique, with_app=False
        )
        # Under the key asked for, not as PostgreSQL holds it (`text.storable`).
        asked = {storable(key): key for key in unique}
        return {
            asked.get(str(key), str(key)): (cast(Status, status), str(digest))
            for key, status, digest in found
        }

    def take(self, after: int, limit: int) -> list[Queued]:
        """See `DeliveryQueue.take`: only events of lanes this writer holds the lease of, in
        position order; a group event only while its company's lane is held too (else it and
        its user's later events wait). A scan from the front (`after` 0) first gives back
        idle lanes and claims free ones, at most every `Leasing.claim_every` seconds."""
        app = self._writer_app()
        with self._guard:
            self._commit()
            if after == 0:
                self._maintain_leases(app)
            with self._errors():
                found = self._pg.execute(
                    f"SELECT e.position, {_E_COLUMNS}, e.received, e.updated, e.failures, "
                    "e.company, e.lane FROM lanes l CROSS JOIN LATERAL (SELECT * FROM events e "
                    "WHERE e.app = l.app AND e.lane = l.lane "
                    "AND e.status IN ('pending', 'failed', 'held') AND e.position > %s "
                    "ORDER BY e.position LIMIT %s) e WHERE l.app = %s AND l.owner = %s "
                    "AND l.until > now() AND l.lane NOT LIKE 'company:%%' "
                    "ORDER BY e.position LIMIT %s",
                    (after, limit, app, self._owner, limit),
                ).fetchall()
                companies = sorted({str(item[13]) for item in found if item[13] is not None})
                asked = self._leases.clock()
                held = lanes.hold_companies(
                    self._pg, app, self._owner, self._leasing.ttl, companies
                )
                self._leases.granted(held, asked)
        blocked: set[str] = set()
        taken: list[Queued] = []
        for item in found:
            queued = Queued(
                row_of(item[1:10]),
                None if item[10] is None else float(item[10]),
                None if item[11] is None else float(item[11]),
                int(item[12]),
            )
            lane = str(item[14])
            if lane in blocked or (item[13] is not None and item[13] not in held):
                blocked.add(lane)  # its user's later events wait behind it: order is kept
                continue
            taken.append(queued)
        return taken

    def hold_lane(self, lane: str) -> list[Queued] | None:
        """Take (or keep) the lease of one lane now, without waiting: its unfinished events in
        position order, or None when another writer holds it (`send` leaves those events to
        it). A lane taken over from a writer whose lease expired marks its first unfinished
        event "possibly sent twice", as a claim does."""
        app = self._writer_app()
        with self._guard:
            self._commit()
            with self._errors():
                asked = self._leases.clock()
                taken = lanes.hold(self._pg, app, self._owner, self._leasing.ttl, lane)
                if not taken:
                    return None
                self._leases.granted([storable(lane)], asked)
                found = self._pg.execute(
                    f"SELECT position, {_COLUMNS}, received, updated, failures FROM events "
                    "WHERE app = %s AND lane = %s AND status IN ('pending', 'failed', 'held') "
                    "ORDER BY position",
                    (app, lane),
                ).fetchall()
            self._start_renewing(app)
        return [
            Queued(
                row_of(item[1:10]),
                None if item[10] is None else float(item[10]),
                None if item[11] is None else float(item[11]),
                int(item[12]),
            )
            for item in found
        ]

    def held_by_others(self, lanes_asked: Sequence[str]) -> bool:
        """Whether another writer holds a live lease on any of these lanes."""
        found = self._all(
            "SELECT count(*) FROM lanes WHERE lane = ANY(%s) AND owner != %s "
            f"AND until > now(){self._and_app}",
            list(lanes_asked),
            self._owner,
        )
        return bool(found) and int(found[0][0]) > 0

    def hold_company(self, company: str) -> bool:
        """Take (or keep) a company lane's lease now, without waiting; whether it is held."""
        app = self._writer_app()
        with self._guard:
            self._commit()
            with self._errors():
                asked = self._leases.clock()
                held = lanes.hold_companies(
                    self._pg, app, self._owner, self._leasing.ttl, [company]
                )
                self._leases.granted(held, asked)
            self._start_renewing(app)
        return company in held

    def _start_renewing(self, app: str) -> None:
        if self._renewer is None:
            self._renewer = _Renewer(self._location, app, self._owner, self._leasing.ttl)
            self._renewer.renewed = self._leases.granted
            self._renewer.clock = self._leases.clock
            self._renewer.start()

    def licensed(self, lane: str, company: str | None) -> bool:
        """Whether this writer still knows it holds the lane (and the company's lane) of an
        event, with a safety margin (`fence.LeaseBook`): the engine starts no request of an
        event whose lane it may have lost (`Control.licensed`)."""
        # The leases' lanes are as PostgreSQL gave them back: compare like with like.
        return self._leases.licensed(storable(lane), None if company is None else storable(company))

    def renew_leases(self) -> list[str]:
        """Renew every lease this writer holds now, on its own connection (what the renewer
        thread does every third of the TTL); the lanes still held."""
        app = self._writer_app()
        with self._guard, self._errors():
            self._commit()
            asked = self._leases.clock()
            renewed = lanes.renew(self._pg, app, self._owner, self._leasing.ttl)
        self._leases.granted(renewed, asked)
        return renewed

    def shared_budget(self) -> budget.SharedBudget:
        """This writer's seat at its app's rate budget (`pipeline.delivery.pg.budget`)."""
        return budget.SharedBudget(self._location, self._writer_app(), self._owner)

    def doubt(self, key: str) -> str | None:
        """Why this event may have been sent twice (its lane was taken over from an instance
        that stopped while it may have been sending it), if so."""
        found = self._one(f"SELECT doubt FROM events WHERE key = %s{self._and_app}", key)
        return None if found is None or found[0] is None else str(found[0])

    def _maintain_leases(self, app: str) -> None:
        now = time.monotonic()
        if now - self._claimed_at < self._leasing.claim_every:
            return
        self._claimed_at = now
        with self._errors():
            self._leases.dropped(lanes.release_idle(self._pg, app, self._owner))
            if self._leasing.retry_delay is not None:
                self._leases.dropped(
                    lanes.release_waiting(self._pg, app, self._owner, self._until_due)
                )
            room = min(
                self._leasing.claim_batch,
                self._leasing.max_lanes - lanes.held_count(self._pg, app, self._owner),
            )
            asked = self._leases.clock()
            self._leases.granted(
                lanes.claim(self._pg, app, self._owner, self._leasing.ttl, room), asked
            )
        self._start_renewing(app)

    def _until_due(self, head: lanes.Head) -> lanes.Until:
        """Whether a held lane whose first unfinished event is a failed one is given back, and
        until when: its retry time (the service's own rule, `readiness`), or for good when it
        is given up and nothing follows it."""
        received, updated, failures, more = head
        row = Row("", 0, "failed", "", b"", 0, (), None, ())
        assert self._leasing.retry_delay is not None  # asked only then
        ready = readiness(
            Queued(row, received, updated, failures),
            time.time(),
            retry_delay=self._leasing.retry_delay,
            give_up_after=self._leasing.give_up_after,
        )
        if ready.kind == "later" and ready.at is not None:
            return ready.at
        if ready.kind == "given up" and not more:
            return -math.inf
        return None

    def known(self, keys: Sequence[str]) -> dict[str, Known]:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        # By key alone, the primary key: keys carry their app (`<app>:...`), and an app filter
        # here lets the planner scan the app's rows instead (30 ms per 100 keys at 30k rows).
        found = self._all(
            "SELECT key, status, hash, position FROM events WHERE key = ANY(%s)",
            unique,
            with_app=False,
        )
        asked = {storable(key): key for key in unique}  # as `states`: under the key asked for
        return {
            asked.get(str(key), str(key)): Known(cast(Status, status), str(digest), int(position))
            for key, status, digest, position in found
        }

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
        app = self._writer_app()
        with self._errors(aborts=True):
            self._begin()
            self._take_positions(app)
            position = self._next
            now = time.time()
            status = "pending" if rejected is None else "rejected"
            lane, company = lanes.lanes_of(key, bytes(line))
            row = (
                key,
                app,
                position,
                status,
                content_hash,
                bytes(line),
                rejected,
                now,
                now if received is None else received,
                lane,
                company,
            )
            if self._rows is not None:  # inside `admit`: written together, at its end
                self._rows.append((row, None if rejected is not None else lane))
            else:
                self._pg.execute(_ENQUEUE, row)
                if rejected is None:
                    lanes.mark_ready(self._pg, app, [lane], self._holder)
        self._next += 1
        self._batched += 1
        if self._batched >= BATCH and not self._atomic:
            self._commit()
        return position

    def admit(
        self,
        arrivals: Sequence[Arrival],
        *,
        received: float | None = None,
        retry_rejected: bool = False,
    ) -> list[Admitted]:
        """See `DeliveryQueue.admit`: the queue's rules as for the file, the rows written in
        one batch (a pipelined multi-row insert and one lanes upsert), not one by one."""
        app = self._writer_app()
        with self._guard:
            self._rows = []
            try:
                admitted = super().admit(arrivals, received=received, retry_rejected=retry_rejected)
                rows = self._rows
            finally:
                self._rows = None
            if rows:
                with self._errors(aborts=True):
                    with self._pg.cursor() as cursor:
                        cursor.executemany(_ENQUEUE, [row for row, _ in rows])
                    ready = [lane for _, lane in rows if lane is not None]
                    lanes.mark_ready(self._pg, app, ready, self._holder)
            return admitted

    @property
    def _holder(self) -> tuple[str, float] | None:
        """Who takes the lanes of stored events at once (a `send`), if anyone."""
        return (self._owner, self._leasing.ttl) if self._leasing.hold_on_admit else None

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        self._writer_app()
        with self._errors(aborts=True):
            self._begin()
            self._savepoints += 1
            name = f"admission_{self._savepoints}"
            self._pg.execute(f"SAVEPOINT {name}")
        before = (self._next, self._batched)
        self._atomic += 1
        try:
            yield
        except BaseException:
            self._next, self._batched = before
            try:
                self._pg.execute(f"ROLLBACK TO SAVEPOINT {name}")
                self._pg.execute(f"RELEASE SAVEPOINT {name}")
            except _driver().Error:
                self._aborted = True  # the connection or transaction is gone as a whole
            raise
        else:
            with self._errors(aborts=True):
                self._pg.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._atomic -= 1
            self._savepoints -= 1

    def file(self, records: Sequence[Record]) -> int:
        """See `DeliveryQueue.file`, fenced: an outcome of an event whose lane another writer
        holds now (taken over after this one's lease expired) is dropped, so it never
        overwrites what the new holder filed. (A lane nobody holds was given back with all
        its events finished, which the lifecycle never overwrites, or at a clean stop.) The
        lanes are share-locked until the commit, so no claim takes one over between this
        check and the write. An event rejected without a request is filed whoever holds its
        lane: nothing of it was sent."""
        app = self._writer_app()
        with self._guard:
            with self._errors(aborts=True):
                self._begin()
                keys = [record.key for record in records]
                self._pg.execute(
                    "SELECT 1 FROM lanes WHERE app = %s AND owner = %s AND lane IN "
                    "(SELECT lane FROM events WHERE key = ANY(%s)) FOR SHARE",
                    (app, self._owner, keys),
                )
                lost = {
                    str(key)
                    for (key,) in self._pg.execute(
                        "SELECT e.key FROM events e JOIN lanes l ON l.app = e.app "
                        "AND l.lane = e.lane WHERE e.key = ANY(%s) AND l.owner != %s",
                        (keys, self._owner),
                    ).fetchall()
                }
            kept = [
                record
                for record in records
                if as_stored(record.key) not in lost
                or (record.status == "rejected" and not record.requests)
            ]
            return super().file(kept)

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
        known_statuses((status,))
        app = self._writer_app()
        with self._errors(aborts=True):
            self._begin()
            changed = self._pg.execute(
                "UPDATE events SET status = %s, attempts = %s, requests = %s, error = %s, "
                "warnings = %s, updated = %s, "
                "failures = failures + (CASE WHEN %s = 'failed' THEN 1 ELSE 0 END) "
                "WHERE key = %s AND app = %s",
                (
                    status,
                    attempts,
                    json.dumps([str(request) for request in requests]),
                    error,
                    json.dumps(list(warnings)),
                    time.time(),
                    status,
                    key,
                    app,
                ),
            ).rowcount
        if commit:
            self._commit()
        if changed == 0:
            raise KeyError(key)

    def requeue(self, keys: Sequence[str] | None, *, rejected: bool) -> int:
        app = self._writer_app()
        self._commit()
        now = time.time()
        with self._errors(aborts=True):
            self._begin()
            if keys is None:
                chosen: list[str] = ["failed", "held"] + (["rejected"] if rejected else [])
                found = self._pg.execute(
                    "UPDATE events SET status = 'pending', updated = %s "
                    "WHERE app = %s AND status = ANY(%s) RETURNING lane",
                    (now, app, chosen),
                ).fetchall()
            else:
                found = self._pg.execute(
                    "UPDATE events SET status = 'pending', updated = %s "
                    "WHERE app = %s AND status != 'pending' AND key = ANY(%s) RETURNING lane",
                    (now, app, list(dict.fromkeys(keys))),
                ).fetchall()
            changed = len(found)
            lanes.mark_ready(self._pg, app, [str(lane) for (lane,) in found])
        self._commit()
        return int(changed)

    def touch(self) -> None:
        self._writer_app()
        with self._errors(aborts=True):
            self._begin()
            self._pg.execute(
                "INSERT INTO meta (name, value) VALUES ('checked', %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (repr(time.time()),),
            )

    def forget_lines(self, before: float, limit: int = 5000) -> int:
        """Retention: shed the bodies of up to `limit` finished rows last changed before
        `before`, then delete up to `limit` rows whose bodies went `KEEP_ROWS_S` ago (their
        key, status and hash kept a late retry one event meanwhile); rows another writer holds
        locked are skipped, so retention never waits on ingest. Returns the bodies shed."""
        app = self._writer_app()
        self._commit()
        now = time.time()
        with self._errors(aborts=True):
            self._begin()
            changed = self._pg.execute(
                "UPDATE events SET line = '', forgotten = %s WHERE key IN (SELECT key "
                "FROM events WHERE forgotten IS NULL AND status IN ('delivered', 'rejected') "
                "AND updated < %s AND app = %s LIMIT %s FOR UPDATE SKIP LOCKED)",
                (now, before, app, limit),
            ).rowcount
            self._pg.execute(
                "DELETE FROM events WHERE key IN (SELECT key FROM events WHERE app = %s "
                "AND forgotten < %s AND status IN ('delivered', 'rejected') LIMIT %s "
                "FOR UPDATE SKIP LOCKED)",
                (app, now - KEEP_ROWS_S, limit),
            )
        self._commit()
        return int(changed)

    def flush(self) -> None:
        self._writer_app()
        if self._aborted:
            self._aborted = False
            self._rollback_quietly()
            raise LedgerError(
                f"ledger {self.where}: PostgreSQL rolled back uncommitted writes after an error"
            )
        self._commit()

    def rollback(self) -> None:
        self._writer_app()
        self._rollback_quietly()
        self._aborted = False

    # -- internals ------------------------------------------------------------------------------

    @property
    def _and_app(self) -> str:
        return "" if self._only is None else " AND app = %s"

    @property
    def _app_args(self) -> tuple[str, ...]:
        return () if self._only is None else (self._only,)

    def app_names(self) -> list[str]:
        """Every app this ledger holds rows of (a reader may see several)."""
        return [self._only] if self._only is not None else self._apps()

    def _apps(self) -> list[str]:
        return [str(app) for (app,) in self._all("SELECT app FROM apps ORDER BY app")]

    def _require_writer(self) -> None:
        self._writer_app()

    def _writer_app(self) -> str:
        if not self._can_write or self._only is None:
            raise LedgerError(f"ledger {self.where} is open read-only")
        return self._only

    def _one(self, query: str, *args: Any) -> tuple[Any, ...] | None:
        with self._errors():
            return self._pg.execute(query.encode(), (*args, *self._app_args)).fetchone()

    def _all(self, query: str, *args: Any, with_app: bool = True) -> list[tuple[Any, ...]]:
        bound = (*args, *self._app_args) if with_app else args
        with self._errors():
            return self._pg.execute(query.encode(), bound).fetchall()

    def _ordered(
        self, statuses: Sequence[Status], columns: str, where: str = "true"
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of `statuses` in position order, `position` first, read in pages up to the
        back of the queue as it was at the call (a row enqueued again later is not yielded
        again); one app at a time when the reader sees several."""
        chosen = list(known_statuses(statuses))
        apps = [self._only] if self._only is not None else self._apps()
        for app in apps:
            top = self._one_app_top(app)
            after = 0
            while True:
                with self._errors():
                    page = self._pg.execute(
                        f"SELECT position, {columns} FROM events WHERE app = %s AND "
                        f"status = ANY(%s) AND position > %s AND position <= %s AND {where} "
                        "ORDER BY position LIMIT %s".encode(),
                        (app, chosen, after, top, PAGE),
                    ).fetchall()
                yield from page
                if len(page) < PAGE:
                    break
                after = int(page[-1][0])

    def _one_app_top(self, app: str) -> int:
        with self._errors():
            found = self._pg.execute(
                "SELECT coalesce(max(position), 0) FROM events WHERE app = %s", (app,)
            ).fetchone()
        return 0 if found is None else int(found[0])

    def _begin(self) -> None:
        if not self._in_tx:
            self._pg.execute("BEGIN")
            self._in_tx = True

    def _take_positions(self, app: str) -> None:
        """Lock the app's counter for the rest of this transaction: positions in commit
        order, and none lost when the transaction is rolled back."""
        if self._positions:
            return
        found = self._pg.execute(
            "SELECT top FROM apps WHERE app = %s FOR UPDATE", (app,)
        ).fetchone()
        self._next = (0 if found is None else int(found[0])) + 1
        self._positions = True

    def _commit(self) -> None:
        if not self._in_tx:
            self._batched = 0
            return
        if self._aborted:
            raise LedgerError(
                f"ledger {self.where}: PostgreSQL rolled back uncommitted writes after an error"
            )
        with self._errors(aborts=True):
            if self._positions and self._only is not None:
                self._pg.execute(
                    "UPDATE apps SET top = %s WHERE app = %s", (self._next - 1, self._only)
                )
            self._pg.execute("COMMIT")
        self._in_tx = self._positions = False
        self._batched = 0

    def _rollback_quietly(self) -> None:
        with contextlib.suppress(_driver().Error):
            if self._in_tx:
                self._pg.execute("ROLLBACK")
        self._in_tx = self._positions = False
        self._batched = 0

    def _reconnect_if_cut(self) -> None:
        """A connection the server cut (a restart, a failover) is not used again: a new one
        is opened (LedgerError while the database is still away), so that the service's
        retries succeed once it is back. What the cut transaction held is lost, as its
        error said; the next `flush` reports it."""
        if not self._pg.closed:
            return
        db = _connect(self._location)
        try:
            _prepare(db, self._location, create=False)
        except BaseException:
            db.close()
            raise
        self._pg = db
        self._in_tx = self._positions = False
        self._batched = 0

    @contextlib.contextmanager
    def _errors(self, *, aborts: bool = False) -> Iterator[None]:
        """A database error as a LedgerError; one that `aborts` a write transaction marks it
        lost (the next `flush` says so), unless an `atomic` block will roll back to its
        savepoint."""
        driver = _driver()
        self._reconnect_if_cut()
        try:
            yield
        except driver.Error as problem:
            if aborts and not self._atomic:
                self._aborted = True
            raise LedgerError(
                f"ledger {self.where}: PostgreSQL: {_words(self._location, problem)}"
            ) from problem


def _prepare(
    db: psycopg.Connection[tuple[Any, ...]], location: PgLocation, *, create: bool
) -> None:
    """Point the connection at the schema; create the tables there on a writer's first use
    (one writer at a time, under an advisory lock), and refuse a schema that is not a ledger
    of ours or is of a newer version."""
    driver = _driver()
    schema = location.schema
    try:
        with db.transaction():
            if create:
                db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{KIND}:{schema}",))
            found = db.execute(
                "SELECT to_regclass(%s) IS NOT NULL, EXISTS (SELECT 1 FROM pg_namespace "
                "WHERE nspname = %s)",
                (f"{schema}.meta", schema),
            ).fetchone()
            has_meta, has_schema = bool(found and found[0]), bool(found and found[1])
            if not has_meta:
                if not create:
                    raise LedgerError(
                        f"no ledger in {location.shown}: schema {schema!r} "
                        f"{'holds no ledger' if has_schema else 'does not exist'} (nothing "
                        "was stored there yet; check the URI and --pg-schema)"
                    )
                _create(db, location, has_schema=has_schema)
            _check_marker(db, location)
        db.execute(f"SET search_path TO {schema}")
    except driver.Error as problem:
        raise LedgerError(
            f"cannot open the PostgreSQL ledger {location.shown}: {_words(location, problem)}"
        ) from problem


def _create(
    db: psycopg.Connection[tuple[Any, ...]], location: PgLocation, *, has_schema: bool
) -> None:
    schema = location.schema
    if has_schema:
        found = db.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s",
            (schema,),
        ).fetchone()
        if found is not None and int(found[0]) > 0:
            raise LedgerError(
                f"schema {schema!r} of {location.shown} holds tables that are not a usercom "
                "ledger: it was left untouched; choose another --pg-schema"
            )
    db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    db.execute(f"SET LOCAL search_path TO {schema}")
    for statement in _SCHEMA:
        db.execute(statement.encode())
    db.execute(
        "INSERT INTO meta (name, value) VALUES ('kind', %s), ('version', %s)",
        (KIND, str(VERSION)),
    )


def _check_marker(db: psycopg.Connection[tuple[Any, ...]], location: PgLocation) -> None:
    rows = dict(
        db.execute(
            f"SELECT name, value FROM {location.schema}.meta WHERE name IN ('kind', 'version')"
        ).fetchall()
    )
    if rows.get("kind") != KIND:
        raise LedgerError(
            f"schema {location.schema!r} of {location.shown} is not a usercom ledger: it was "
            "left untouched; choose another --pg-schema"
        )
    version = str(rows.get("version", ""))
    if not version.isdigit() or int(version) > VERSION:
        raise LedgerError(
            f"the ledger {location.shown} has schema version {version}, newer than this "
            f"usercom reads ({VERSION}): upgrade usercom-pipeline on this machine"
        )


@dataclass(frozen=True, slots=True)
class Leasing:
    """How a writer leases lanes: `ttl` seconds a lease lasts unless renewed (`--lease-ttl`),
    at most `max_lanes` user lanes held at once (a fair share when several instances start
    together), and how often a scan from the front gives back and claims lanes."""

    ttl: float = 30.0
    max_lanes: int = 64
    claim_every: float = 0.25
    # Lanes claimed at once: instances starting together on a backlog split it between them
    # rather than the first one taking every lane.
    claim_batch: int = 16
    # A `send` holds the lane of each event it stores from the moment it is stored.
    hold_on_admit: bool = False
    # The writer's own clock for its leases (`fence.LeaseBook`); tests pass a fake one.
    clock: Callable[[], float] = time.monotonic
    # The service's retry policy (--give-up-after, the doubling retry wait): a lane whose
    # first event waits for its retry is given back until then, so it takes no slot (None:
    # a `send`, which holds its lanes to the end).
    retry_delay: Callable[[int], float] | None = None
    give_up_after: float = math.inf


class _Renewer(threading.Thread):
    """Renews this writer's leases every third of the TTL, on a connection of its own (so a
    long delivery round or a busy ledger thread never lets a lease lapse)."""

    def __init__(self, location: PgLocation, app: str, owner: str, ttl: float) -> None:
        super().__init__(name=f"usercom-leases-{app}", daemon=True)
        self._location, self._app, self._owner, self._ttl = location, app, owner, ttl
        self._stopped = threading.Event()
        self.renewed: Callable[[list[str], float], None] = lambda _lanes, _asked: None
        self.clock: Callable[[], float] = time.monotonic

    def run(self) -> None:
        db: psycopg.Connection[tuple[Any, ...]] | None = None
        while not self._stopped.wait(self._ttl / 3):
            try:
                db = db if db is not None and not db.closed else connect_at(self._location)
                asked = self.clock()
                self.renewed(lanes.renew(db, self._app, self._owner, self._ttl), asked)
            except (LedgerError, _driver().Error):
                if db is not None:
                    db.close()
                db = None  # the next tick connects again; the TTL allows two misses
        if db is not None:
            db.close()

    def stop(self) -> None:
        self._stopped.set()
        self.join(5)
