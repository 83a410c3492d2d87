"""One rate budget per app across instances (DELIVERY §5, §7), kept in the database.

Each instance keeps its own `Pacer` for the hot path (no database call per request) and, a
few times a second, meets the others in one small transaction on the app's `budgets` row:

- it says what it learned since the last meeting: how many requests it had accepted per
  second lately, how many 429s it met and until when their Retry-After holds, and whether
  it paused on a run-level fault (a refused key) or resumed after a good probe;
- the row decides for everyone: after a 429 (at most one cut per second) the app's rate drops
  to a little under what *all* instances together had accepted, as §5's pacer does for one;
  otherwise, while the instances use most of it, it grows with time (x1.5 per second
  until the first 429, then one request/s per second), never past `--rate`, which caps the
  instances together;
- it takes back its share: the app's rate divided by the instances seen in the last few
  seconds that have events to send (an idle one counts itself in, so the moment work reaches
  it overshoots by one share at most until the next meeting), the latest Retry-After, and the
  app's pause reason, if any.

So a 429 seen by one instance slows all of them within a meeting, an instance that dies stops
counting after `MEMBER_TTL_S`, and a refused key pauses every instance's delivery (each one's
`/health` says so) until a probe of one of them succeeds.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pipeline.delivery.ledger import LedgerError
from pipeline.delivery.pg.location import PgLocation

if TYPE_CHECKING:
    import psycopg

SYNC_S: Final = 0.1  # how often an instance meets the others (one small transaction)
MEMBER_TTL_S: Final = 3.0  # an instance not heard from for this long no longer takes a share
INITIAL: Final = 50.0  # requests/s before anything is learned (the pacer's `initial`)
FLOOR: Final = 0.5
CUT_TO: Final = 0.95  # share of the measured accepted rate kept after a 429
PROBE_STEP: Final = 1.0
# Growth per second before the first 429: gentler than one pacer's, because several
# instances learn of a 429 only at their next meeting, and each overshoot costs 429s.
SLOW_START: Final = 1.5  # requests/s added per second of growth after the first 429
CUT_EVERY_S: Final = 1.0
# The rate grows only while the instances use most of it: an idle app's rate stays where it
# was (TCP's "congestion window validation"), so a burst after a quiet hour is not a storm.
USED_SHARE: Final = 0.6


@dataclass(frozen=True, slots=True)
class Learned:
    """What one instance tells the others at a meeting."""

    accepted: float  # requests/s it had answered (not 429, not a failure), lately
    throttled: int  # 429s it met since it started (a running count)
    retry_after: float  # seconds from now it must wait for a Retry-After (0: none)
    fault: str | None  # the run-level fault it paused on, if it is paused on one
    resumed: bool  # a probe of its own succeeded since the last meeting
    cap: float | None  # --rate: the app's cap, all instances together
    busy: bool = True  # it has events to send: the idle ones take no share of the rate


@dataclass(frozen=True, slots=True)
class Shared:
    """What a meeting gives back."""

    share: float  # requests/s this instance may send
    rate: float  # the app's rate, all instances together
    members: int  # instances with events to send (this one counted in)
    wait: float  # seconds from now every instance waits (a Retry-After someone met)
    fault: str | None  # the fault the app is paused on (a refused key), if any


def create_sql() -> tuple[str, ...]:
    return (
        """CREATE TABLE budgets (
            app text PRIMARY KEY,
            rate double precision NOT NULL,
            slow_start boolean NOT NULL DEFAULT true,
            grown_at timestamptz NOT NULL DEFAULT now(),
            cut_at timestamptz,
            resume_at timestamptz,
            fault text,
            cap double precision
        )""",
        """CREATE TABLE members (
            app text NOT NULL,
            owner text NOT NULL,
            seen timestamptz NOT NULL,
            accepted double precision NOT NULL DEFAULT 0,
            throttled bigint NOT NULL DEFAULT 0,
            busy boolean NOT NULL DEFAULT true,
            PRIMARY KEY (app, owner)
        )""",
    )


def grown(rate: float, slow_start: bool, seconds: float, cap: float | None) -> float:
    """The app's rate after `seconds` of good answers.

    >>> grown(50.0, True, 1.0, None), grown(50.0, False, 2.0, None), grown(50.0, True, 1.0, 60.0)
    (75.0, 51.0, 60.0)
    """
    seconds = max(0.0, min(seconds, 1.0))  # a long gap (nobody sending) is not a licence
    rate = rate * SLOW_START**seconds if slow_start else rate + PROBE_STEP * seconds
    return _limited(rate, cap)


def cut(rate: float, accepted_by_all: float, cap: float | None) -> float:
    """The app's rate after a 429: under what every instance together had accepted.

    >>> cut(80.0, 50.0, None), cut(80.0, 0.0, None)
    (47.5, 72.0)
    """
    measured = accepted_by_all * CUT_TO
    return _limited(min(rate * 0.9, measured) if measured > 0 else rate * 0.9, cap)


def _limited(rate: float, cap: float | None) -> float:
    rate = max(FLOOR, rate) if math.isfinite(rate) else INITIAL
    return min(rate, cap) if cap is not None else rate


def meet(db: psycopg.Connection[tuple[Any, ...]], app: str, owner: str, learned: Learned) -> Shared:
    """One meeting (a transaction on the app's budgets row): see the module's doc."""
    with db.transaction():
        db.execute(
            "INSERT INTO budgets (app, rate, cap) VALUES (%s, %s, %s) ON CONFLICT (app) DO NOTHING",
            (app, _limited(INITIAL, learned.cap), learned.cap),
        )
        row = db.execute(
            "SELECT rate, slow_start, extract(epoch FROM now() - grown_at), "
            "extract(epoch FROM now() - cut_at), fault FROM budgets WHERE app = %s FOR UPDATE",
            (app,),
        ).fetchone()
        assert row is not None  # inserted above when missing
        rate, slow_start, since_grown, since_cut, fault = row
        before = db.execute(
            "SELECT throttled FROM members WHERE app = %s AND owner = %s", (app, owner)
        ).fetchone()
        new_429s = learned.throttled - (int(before[0]) if before is not None else 0)
        db.execute(
            "INSERT INTO members (app, owner, seen, accepted, throttled, busy) "
            "VALUES (%s, %s, now(), %s, %s, %s) ON CONFLICT (app, owner) DO UPDATE SET "
            "seen = now(), accepted = excluded.accepted, throttled = excluded.throttled, "
            "busy = excluded.busy",
            (app, owner, learned.accepted, learned.throttled, learned.busy),
        )
        live = db.execute(
            "SELECT count(*) FILTER (WHERE busy OR owner = %s), coalesce(sum(accepted), 0) "
            "FROM members WHERE app = %s AND seen > now() - make_interval(secs => %s)",
            (owner, app, MEMBER_TTL_S),
        ).fetchone()
        members, accepted_by_all = (int(live[0]), float(live[1])) if live else (1, 0.0)
        rate = float(rate)
        if new_429s > 0 and (since_cut is None or float(since_cut) >= CUT_EVERY_S):
            rate = cut(rate, accepted_by_all, learned.cap)
            db.execute(
                "UPDATE budgets SET rate = %s, slow_start = false, cut_at = now(), "
                "grown_at = now() WHERE app = %s",
                (rate, app),
            )
        elif new_429s <= 0:
            rate = grown(rate, bool(slow_start), float(since_grown or 0.0), learned.cap)
            db.execute("UPDATE budgets SET rate = %s, grown_at = now() WHERE app = %s", (rate, app))
        if learned.retry_after > 0:
            db.execute(
                "UPDATE budgets SET resume_at = greatest(coalesce(resume_at, now()), now() + "
                "make_interval(secs => %s)) WHERE app = %s",
                (learned.retry_after, app),
            )
        if learned.fault is not None and fault is None:
            fault = learned.fault
            db.execute("UPDATE budgets SET fault = %s WHERE app = %s", (fault, app))
        elif learned.resumed and learned.fault is None and fault is not None:
            fault = None
            db.execute("UPDATE budgets SET fault = NULL WHERE app = %s", (app,))
        db.execute("UPDATE budgets SET cap = %s WHERE app = %s", (learned.cap, app))
        waiting = db.execute(
            "SELECT greatest(0, coalesce(extract(epoch FROM resume_at - now()), 0)) FROM budgets "
            "WHERE app = %s",
            (app,),
        ).fetchone()
    members = max(members, 1)
    return Shared(
        share=max(FLOOR, rate / members),
        rate=rate,
        members=members,
        wait=float(waiting[0]) if waiting is not None and waiting[0] is not None else 0.0,
        fault=None if fault is None else str(fault),
    )


class SharedBudget:
    """An instance's seat at its app's meetings, on a connection of its own (the ledger's is
    busy with ingest and filing). `meet` is blocking: the service calls it in a thread."""

    def __init__(self, location: PgLocation, app: str, owner: str) -> None:
        self._location, self._app, self._owner = location, app, owner
        self._db: psycopg.Connection[tuple[Any, ...]] | None = None

    def meet(self, learned: Learned) -> Shared:
        """One meeting; raises LedgerError when the database cannot be reached (the caller
        keeps its last share and tries again at the next meeting)."""
        from pipeline.delivery.pg.ledger import connect_at, driver

        try:
            if self._db is None or self._db.closed:
                self._db = connect_at(self._location)
            return meet(self._db, self._app, self._owner, learned)
        except driver().Error as problem:
            self.close()
            raise LedgerError(f"the shared rate budget could not be read: {problem}") from problem

    def queued(self) -> int:
        """The app's unfinished events, whichever instance stored them (the partial index of
        unfinished events: it costs what is queued, not what the table holds)."""
        from pipeline.delivery.pg.ledger import connect_at, driver

        try:
            if self._db is None or self._db.closed:
                self._db = connect_at(self._location)
            found = self._db.execute(
                "SELECT count(*) FROM events WHERE app = %s "
                "AND status IN ('pending', 'failed', 'held')",
                (self._app,),
            ).fetchone()
        except driver().Error as problem:
            self.close()
            raise LedgerError(f"the queue could not be counted: {problem}") from problem
        return 0 if found is None else int(found[0])

    def leave(self) -> None:
        """At a clean stop: this instance's share goes to the others at once."""
        with contextlib.suppress(Exception):
            if self._db is not None and not self._db.closed:
                self._db.execute(
                    "DELETE FROM members WHERE app = %s AND owner = %s", (self._app, self._owner)
                )
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
