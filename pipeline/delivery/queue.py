"""The delivery queue (DELIVERY §2, §4, §6): one interface for every place events wait.

`send` admits its input and drains the queue once; `serve` admits from HTTP and drains it
forever; the operator commands (`failed`, `explain`, `report`, `requeue`) and the console read
it. Each backend holds one app's queue: the SQLite ledger (`pipeline.delivery.ledger.Ledger`,
one writer by a file lock) first, a PostgreSQL one (many writers, leases per lane, one rate
budget in the database) next.

The interface is synchronous on purpose: `send` calls it from its run, `serve` runs every call
on its one ledger thread (`serve.store.Store`, group commit), and a PostgreSQL backend with one
connection per queue blocks the same way. Whoever must not block (an event loop) hands the
call to a thread; the queue itself never owns a loop.

The rules that decide what an arrival or an outcome does to a stored event, and when a failed
one is due again, are pure functions here (`admission`, `filed_as`, `readiness`) over the
lifecycle table (`lifecycle.py`, the only status vocabulary), so every backend applies the
same ones and only stores their result; which due events a round takes is `rounds.Picking`.

Read models are frozen values: `Row` (one event as stored), `Queued` (a row as the queue hands
it out, with its timings), `Admitted` (what admitting one event did).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Protocol, runtime_checkable

from pipeline.delivery.lifecycle import (
    UNFINISHED,
    Happening,
    Reported,
    Status,
    files,
    happening_of,
    next_status,
)
from pipeline.delivery.outcome import Exchange, Logged

__all__ = [
    "Admit",
    "Admitted",
    "Arrival",
    "DeliveryQueue",
    "Known",
    "QueueReader",
    "Queued",
    "Readiness",
    "Record",
    "Row",
    "admission",
    "filed_as",
    "readiness",
]


# -- frozen values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One event as the queue holds it (what `explain`, `failed` and `report` read)."""

    key: str
    position: int
    status: Status
    content_hash: str
    line: bytes
    attempts: int
    requests: tuple[str, ...]  # as stored: each `METHOD URL -> answer` (an Exchange's text)
    error: str | None
    warnings: tuple[str, ...]

    @property
    def exchanges(self) -> tuple[Exchange, ...]:
        """The stored requests as values (a ledger of any version stores their text)."""
        return tuple(Exchange.read(text) for text in self.requests)


@dataclass(frozen=True, slots=True)
class Queued:
    """An unfinished event as `take` hands it out: the row, when it was received and last
    changed (seconds since the epoch, when known), and how many delivery rounds it failed
    since it was received."""

    row: Row
    received: float | None
    updated: float | None
    failures: int


@dataclass(frozen=True, slots=True)
class Arrival:
    """An event to admit, keyed once where it was read (`incoming.event_key`): its key,
    content hash and original line; `rejected` (the reason) files it `rejected` at once,
    for an event that can never be delivered (over the size limit, not an object)."""

    key: str
    content_hash: str
    line: bytes
    rejected: str | None = None


@dataclass(frozen=True, slots=True)
class Known:
    """What the queue already holds under a key: enough to decide an admission."""

    status: Status
    content_hash: str
    position: int


class Admit(Enum):
    """What admitting one event did (DELIVERY §2 "final means final for that content", §4
    keys, §6 ingest)."""

    NEW = "new"  # an unknown key: stored pending at the back
    CHANGED = "changed"  # a finished key with other content: pending again, at the back
    RETRIED = "retried"  # a rejected key, same content, retried as asked (--retry-rejected)
    KNOWN = "known"  # the same content under a known key: nothing changes (a client's retry)
    REJECTED = "rejected"  # stored rejected at once (`Arrival.rejected`)
    REPEATED = "repeated"  # other content under an unfinished key: rejected under its own key


@dataclass(frozen=True, slots=True)
class Admitted:
    """One event's admission: the key it is stored under (a repeat's own key, see
    `incoming.repeat_key`), its position, what happened, what the queue held before under
    that key (None: nothing), and why it was filed rejected at once, if it was."""

    key: str
    position: int
    verdict: Admit
    before: Known | None
    rejected: str | None = None

    @property
    def joined(self) -> bool:
        """Whether it joined the queue of unfinished events now."""
        was_queued = self.before is not None and self.before.status in UNFINISHED
        return self.verdict in (Admit.NEW, Admit.CHANGED, Admit.RETRIED) and not was_queued


@dataclass(frozen=True, slots=True)
class Record:
    """One outcome to file: for the content `content_hash` of the event `key` (an outcome of
    content replaced meanwhile is dropped), with the event's line (stored again when its row
    went with a rolled-back transaction), the reported status and what the row keeps:
    attempts (in all, as the caller counts them), requests, error, warnings."""

    key: str
    content_hash: str
    line: bytes
    status: Reported
    attempts: int
    requests: tuple[Logged, ...]
    error: str | None
    warnings: tuple[str, ...]


# -- the rules, pure ------------------------------------------------------------------------------


def admission(before: Known | None, arrival: Arrival, *, retry_rejected: bool = False) -> Admit:
    """What admitting `arrival` does, given what the queue holds under its key.

    >>> new = Arrival("acme:m1", "h1", b"{}")
    >>> admission(None, new).value, admission(Known("delivered", "h1", 1), new).value
    ('new', 'known')
    >>> admission(Known("delivered", "h0", 1), new).value
    'changed'
    >>> admission(Known("pending", "h0", 1), new).value
    'repeated'
    """
    if before is None:
        return Admit.NEW if arrival.rejected is None else Admit.REJECTED
    if before.content_hash == arrival.content_hash:
        if retry_rejected and before.status == "rejected":
            return Admit.RETRIED
        return Admit.KNOWN
    if before.status in UNFINISHED:
        # §4/§6: the first version is the event; a later one never replaces what is queued.
        return Admit.REPEATED
    return Admit.CHANGED if arrival.rejected is None else Admit.REJECTED


def filed_as(now: Known | None, record: Record) -> Status | None:
    """The status `record` files its event as, or None when nothing is written: a plan (never
    filed), an outcome of content replaced meanwhile, or one the lifecycle table keeps as it
    is (held again, deferred without an attempt, a second finished outcome). A key the queue
    lost (its row went with a rolled-back batch) is filed as if pending.

    >>> rec = Record("k", "h", b"{}", "delivered", 1, (), None, ())
    >>> filed_as(Known("pending", "h", 1), rec), filed_as(Known("pending", "h2", 1), rec)
    ('delivered', None)
    >>> filed_as(Known("delivered", "h", 1), rec) is None
    True
    """
    happening = happening_of(record.status)
    if happening is None:
        return None
    before: Status = "pending" if now is None else now.status
    if now is not None and now.content_hash != record.content_hash:
        return None
    if happening is Happening.DEFERRED and before == "pending" and record.attempts:
        # §4 explain tells every attempt: a run fault (a refused key) ends an attempt with
        # its event still pending, and the row keeps the requests that met the fault.
        return "pending"
    if not files(before, happening):  # the table has no row from a finished status
        return None
    return next_status(before, happening)


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether a taken event is to be tried now (DELIVERY §6): `ready`; `later` (a failed
    event whose backoff has not passed: it is not attempted and holds its user until `at`);
    or `given up` (failed, and older than --give-up-after: it stays failed, holds nobody)."""

    kind: Literal["ready", "later", "given up"]
    at: float | None = None
    received: float | None = None  # when it arrived, else last changed (its age counts from it)


def readiness(
    queued: Queued, now: float, *, retry_delay: Callable[[int], float], give_up_after: float
) -> Readiness:
    """A taken event's readiness at `now` (a clock the caller owns): a failed one is tried
    again `retry_delay(failures)` after its last failure, until its age passes `give_up_after`.

    >>> row = Row("k", 1, "failed", "h", b"{}", 1, (), None, ())
    >>> def wait(failures: int) -> float:
    ...     return 60.0 * failures
    >>> readiness(Queued(row, 0.0, 100.0, 2), 130.0, retry_delay=wait, give_up_after=1e9)
    Readiness(kind='later', at=220.0, received=0.0)
    >>> readiness(Queued(row, 0.0, 100.0, 2), 230.0, retry_delay=wait, give_up_after=200).kind
    'given up'
    """
    received = queued.received if queued.received is not None else queued.updated
    if queued.row.status != "failed":
        return Readiness("ready", received=received)
    if received is not None and now - received > give_up_after:
        return Readiness("given up", received=received)
    due = (queued.updated or 0.0) + retry_delay(max(queued.failures, 1))
    if due > now:
        return Readiness("later", due, received)
    return Readiness("ready", received=received)


# -- the interface ------------------------------------------------------------------------------


@runtime_checkable
class QueueReader(Protocol):
    """What reading a queue offers: every call works while a writer runs (DELIVERY §4: the
    read-only commands take no lock). Iterators read in pages: a row that changes after its
    page was read is yielded as it was, and none is yielded twice."""

    @property
    def app(self) -> str:
        """The app (subdomain) this queue belongs to (§1: one queue per app)."""
        ...

    @property
    def where(self) -> str:
        """Where it lives, for messages: a path, or a URI without its password."""
        ...

    def get(self, key: str) -> Row | None:
        """The event stored under exactly `key`."""
        ...

    def find(self, key: str) -> Row | None:
        """The event under `key`, or under `<app>:<key>` (how operators name events)."""
        ...

    def keys_starting(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` keys starting with `prefix`, in key order (`explain KEY-PREFIX`)."""
        ...

    def updated_at(self, key: str) -> float | None:
        """When the event last changed (seconds since the epoch), if known."""
        ...

    def doubt(self, key: str) -> str | None:
        """Why the event may have been sent twice (§7: its lane was taken over from an
        instance that stopped mid-write), or None."""
        ...

    def rows(self, statuses: Sequence[Status] | None = None) -> Iterator[Row]:
        """The events in `statuses` (None: all), in position order (§2 positions)."""
        ...

    def lines(self, statuses: Sequence[Status]) -> Iterator[bytes]:
        """The original lines of the events in `statuses`, byte for byte, in position order
        (§4 `usercom failed`); lines dropped by retention (§6) are left out."""
        ...

    def counts(self) -> Mapping[str, int]:
        """Events per status, every status present (§4 `report`, §6 `/health`)."""
        ...

    def error_counts(
        self, top: int, statuses: Sequence[Status] = ("rejected", "failed")
    ) -> list[tuple[str, int]]:
        """The `top` most common errors of those statuses, with counts (§4 summary)."""
        ...

    def request_logs(self) -> Iterator[tuple[str, ...]]:
        """Each event's stored requests (`METHOD URL -> answer`, key masked), in position
        order, events with none left out (§4 `report`: API calls per endpoint)."""
        ...

    def oldest_unfinished(self) -> Row | None:
        """The unfinished event with the lowest position (§4 `report`)."""
        ...

    def oldest_received(self) -> float | None:
        """When the oldest unfinished event arrived (§6 `/metrics`: the oldest one's age)."""
        ...

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Reads inside see one consistent state (a read transaction)."""
        ...

    def close(self) -> None:
        """Commit what is batched (a writer), release what is held (idempotent)."""
        ...


@runtime_checkable
class DeliveryQueue(QueueReader, Protocol):
    """One app's queue of events, for whoever delivers them.

    Every write is staged until `commit` (a writer may batch many admissions or outcomes in
    one commit, as the service's group commit does); nothing staged may be told to a client
    as stored (§6: 200 only once committed) or attempted (§4: each event is stored before it
    is sent).
    """

    def admit(
        self,
        arrivals: Sequence[Arrival],
        *,
        received: float | None = None,
        retry_rejected: bool = False,
    ) -> list[Admitted]:
        """Store events, all of them or none (one request is admitted whole, §6), in order,
        each as `admission` decides (§2 final means final for that content, §4 keys are one
        event, a later version of a queued event is rejected under its own key). A key met
        twice in `arrivals` is decided against what the first one stored. `received` is when
        they arrived (default now, §8 latency is measured from it). Staged: see `commit`."""
        ...

    def take(self, after: int, limit: int) -> list[Queued]:
        """Up to `limit` unfinished events (pending, failed, held) with a position above
        `after`, in position order (§2: a user's events are attempted in position order;
        the queue's unfinished ones go before new input). The caller decides which are due
        (§6 backoff, give-up) and which lanes it may run; a backend with many writers (§7)
        returns only events of lanes this writer holds the lease of."""
        ...

    def file(self, records: Sequence[Record]) -> int:
        """File outcomes (§2: one outcome per event per run) as `filed_as` decides: a `failed`
        one counts one more failure (`Queued.failures`), an outcome of replaced content and a
        second finished outcome are dropped; an event whose row went with a rolled-back
        batch is stored again (pending) first, whatever its outcome. Returns how many events
        finished (left the queue). Staged: see `commit`."""
        ...

    def requeue(self, keys: Sequence[str] | None, *, rejected: bool) -> int:
        """Make events pending again in place (positions kept; §4 `usercom requeue`, §8
        replay); returns how many changed. None: every failed and held event, and rejected
        ones with `rejected`; with keys: exactly those not pending, whatever their status
        (the caller checks the flags, `ledger_views.requeue_keys`). Committed at once."""
        ...

    def commit(self) -> None:
        """Make every staged write durable; raises `LedgerError` when the backend lost them
        (a full disk rolled the transaction back): none of them may be reported as stored."""
        ...

    def rollback(self) -> None:
        """Discard what is staged (after a failed commit)."""
        ...

    def forget_lines(self, before: float, limit: int = 5000) -> int:
        """Retention (§6 --keep-days): drop the lines of up to `limit` finished events last
        changed before `before`, keeping key, hash and status. Committed at once."""
        ...

    def touch(self) -> None:
        """Stage one small write, so the next `commit` tells whether the queue takes writes
        again (after a full disk)."""
        ...
