"""The service's delivery (DELIVERY §6): one loop per app, draining its ledger continuously.

The loop starts *rounds*. A round takes, in position order, up to a page of the app's due
unfinished events of users (lanes) and companies no running round holds, and hands them to
the engine (`deliver`) with the app's one `AppState` (its pace and identity cache live as long
as the service). It holds each of those users and companies until its last event in the
round has an outcome filed, so each user's events are delivered one after the other in
position order and two rounds never write one company at once; a user done early is let go
while another's retries go on, so its later events never wait for them. Rounds run side by
side (up to `MAX_ROUNDS`); their requests share the app's connections, at most --concurrency
at once. When ingest commits new events, a round ends or lets half its users go, or a failed
event comes due, the loop looks for the next round.

- A `failed` event is tried again after a capped, doubling wait (`ServeOptions.retry_delay`);
  until then its user's later events are filed `held` and wait. Once its age passes
  --give-up-after it is no longer tried (it stays `failed`, for `usercom failed`/`requeue`)
  and holds nobody.
- A run-level fault (a refused key, a wrong URL, an outage past --max-outage) *pauses* the
  app: the other rounds stop, events stay queued, `/health` says why, and a probe (doubling
  wait, capped) resumes delivery by itself once User.com answers it. The loop probes at
  start, too.
- Events are stored raw and transformed here, so a restart with a corrected config applies to
  what is queued.
- A ledger that cannot commit (a full disk, a quota, an I/O error) or be read (a damaged file)
  *pauses* the app too, or each event whose outcome is not on disk would be sent again by the
  next round: the rounds stop, the outcomes not filed are kept in memory, their users (lanes)
  are not taken again, ingest answers 503, and the kept outcomes are filed (and the ledger
  checked) again with a doubling wait until it works; then delivery resumes by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial

from returns.result import Success

from pipeline.core.answers import Reply, Unreachable
from pipeline.core.compose import Job
from pipeline.core.config import Config
from pipeline.delivery.engine import AppState, Control, DeliveryOptions, deliver
from pipeline.delivery.faults import RESUME, probe_fault
from pipeline.delivery.filing import record_of
from pipeline.delivery.incoming import Incoming, stored
from pipeline.delivery.lifecycle import Status, files, happening_of
from pipeline.delivery.outcome import Outcome, Summary
from pipeline.delivery.pg import PgLedger, shared
from pipeline.delivery.queue import DeliveryQueue, Queued, Record, readiness
from pipeline.delivery.rounds import Held, Picking
from pipeline.delivery.wire import Wire
from pipeline.runner import Target
from pipeline.serve.ingest import type_label
from pipeline.serve.logs import emit
from pipeline.serve.metrics import Metrics
from pipeline.serve.options import ServeOptions
from pipeline.serve.sharing import meetings
from pipeline.serve.store import Store, ledger_trouble

PAUSED_TAIL = "events stay queued; delivery resumes by itself once a probe succeeds"
PARSED_KEEP = 50_000  # parsed events kept between rounds (a backlog is parsed once)
MAX_ROUNDS = 16  # rounds at once: a slow one (a user's retries) never stops the others
# A shared (PostgreSQL) queue is looked at this often when idle: events another instance
# stored, and lanes whose holder stopped, are found without its ingest waking this one.
SHARED_POLL_S = 0.2
SCAN_PAGES = 8  # pages of the queue looked through for users that are free, at most
LEDGER_RETRY_FIRST_S = 0.5  # a paused ledger's first check, then doubling
LEDGER_RETRY_MAX_S = 10.0  # a commit is cheap to try: a full disk is noticed soon after it frees


@dataclass(frozen=True, slots=True)
class _Filed:
    """What a round knows of an event it hands to the engine."""

    status: Status
    attempts: int
    received: float | None
    type: str
    failures: int


@dataclass(slots=True, eq=False)
class _Round:
    """A round in progress: the users (lanes) and companies it holds, each until its last
    event in the round has an outcome (a filed outcome not yet on disk holds its user too,
    see `_unfiled_lanes`). A user's events are done long before another's retries end, and
    its later events must not wait for them: the round lets each go as it is done."""

    control: Control
    lanes: set[str]
    companies: set[str]
    task: asyncio.Task[None] = field(init=False)
    left: Counter[str] = field(default_factory=Counter)  # events per lane not finished
    company_left: Counter[str] = field(default_factory=Counter)
    wake_at: int = 0  # let the loop look for work when this few lanes are left

    @classmethod
    def of(
        cls, items: Sequence[Incoming], licensed: Callable[[str, str | None], bool] | None = None
    ) -> _Round:
        lanes = Counter(item.lane for item in items)
        companies = Counter(item.company for item in items if item.company is not None)
        return cls(
            Control(licensed=licensed),
            set(lanes),
            set(companies),
            left=lanes,
            company_left=companies,
            wake_at=len(lanes) // 2,
        )

    def done(self, item: Incoming) -> bool:
        """Let `item`'s user (and company) go once it was their last event here. True when the
        loop should look for work: each time half of the lanes left are done, and when one
        lane is left (the slow one), so a round of many users costs a few looks, not one each.
        A stopping round (a fault, a stop) keeps what it holds until it ends: its pending
        events are not for another round to take meanwhile."""
        if self.control.reason is not None:
            return False
        self.left[item.lane] -= 1
        if self.left[item.lane] <= 0:
            self.lanes.discard(item.lane)
        if item.company is not None:
            self.company_left[item.company] -= 1
            if self.company_left[item.company] <= 0:
                self.companies.discard(item.company)
        if len(self.lanes) > max(self.wake_at, 1):
            return False
        self.wake_at = len(self.lanes) // 2
        return True


@dataclass(frozen=True, slots=True)
class _Record:
    """An outcome waiting to be filed, and the user (lane) it keeps busy until it is."""

    filing: Record
    lane: str


def ledger_reason(error: BaseException, doing: str) -> str:
    """What /health and the logs say while the ledger cannot `doing` ("commit", "be read")."""
    problem = str(error) or type(error).__name__
    if type(error) is sqlite3.DatabaseError:  # SQLite's words for a damaged file
        return (
            f"the ledger is damaged (SQLite: {problem}): ingest answers 503 and delivery "
            "waits; stop the service, then restore the ledger from a backup or start with "
            "another --ledger (sqlite3's .recover can salvage the rows left)"
        )
    return (
        f"the ledger cannot {doing} ({problem}): ingest answers 503, outcomes not filed are "
        "kept in memory and their users wait; delivery resumes by itself once it works again "
        "(check the free space of its disk)"
    )


def event_type(item: Incoming) -> str:
    """The event's type for metrics and logs (read from its line when it cannot be sent)."""
    match item.job:
        case Success(Job() as job):
            return job.event.type
    try:
        message = json.loads(item.line)
    except (ValueError, RecursionError):
        return "invalid"
    return type_label(message.get("type")) if isinstance(message, dict) else "invalid"


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# A refused key or a wrong URL comes from the config, which the service reads only at start:
# probing goes on, but only a fixed config and a restart end such a pause.
_CONFIG_FAULTS = ("check apiKey", "the URL is wrong")
CONFIG_TAIL = (
    "events stay queued; fix the config and restart usercom serve (it reads the config only at "
    "start)"
)


def pause_reason(fault: str) -> str:
    """Why delivery is paused, and what ends the pause."""
    tail = CONFIG_TAIL if any(hint in fault for hint in _CONFIG_FAULTS) else PAUSED_TAIL
    return f"{fault.removesuffix('; ' + RESUME)}; {tail}"


class _Wake(asyncio.Event):
    """The loop's wake-up. `set` (whatever may free a user: a round's end or its users let
    go, outcomes filed, a requeue, a resume) makes the next look start at the queue's front;
    `arrived` (ingest committed events, which join the back) lets it start where a look that
    found every user held stopped: those users are still held, and reading their events
    again at every ingest commit was most of the service's CPU with a long held queue.

    A look awaits its pages, so a user may be let go while it reads: what it found is
    recorded only if nothing was let go since it started (`looking` / `looked`), or the next
    look would start past the freed user's events and take a later one of them first."""

    def __init__(self) -> None:
        super().__init__()
        self.held_through = 0  # every event up to this position waits for a held user
        self._resets = 0  # how many times a user may have been let go

    def forget(self) -> None:
        """A user may have been let go: the next look starts at the front."""
        self.held_through = 0
        self._resets += 1

    def set(self) -> None:
        self.forget()
        super().set()

    def arrived(self) -> None:
        super().set()

    def looking(self) -> int:
        """A look starts: the token `looked` wants back."""
        return self._resets

    def looked(self, token: int, held_through: int) -> None:
        """A look that started at `token` found every event up to `held_through` waiting for
        a held user (0: not so); kept only while no user was let go meanwhile."""
        self.held_through = held_through if token == self._resets else 0


@dataclass(slots=True)
class AppDelivery:
    """One app's delivery loop and what `/health` and `/metrics` read of it."""

    cfg: Config
    options: ServeOptions
    store: Store
    ledger: DeliveryQueue
    metrics: Metrics
    stopping: asyncio.Event
    queued: int = 0
    paused: str | None = None
    wake: _Wake = field(default_factory=_Wake)
    rounds: list[_Round] = field(default_factory=list)
    state: AppState | None = None
    fault: str | None = None  # met by a round, not yet acted upon
    next_due: float | None = None
    _wire: Wire | None = None  # the app's connections, kept for the service's life
    _parsed: OrderedDict[tuple[str, str, int], Incoming] = field(default_factory=OrderedDict)
    _outbox: list[_Record] = field(default_factory=list)
    _flushing: asyncio.Task[None] | None = None
    _filed: dict[str, _Filed] = field(default_factory=dict)
    _throttled: int = 0
    _given_up: set[str] = field(default_factory=set)
    ledger_fault: str | None = None  # why the ledger cannot commit or be read, while it lasts
    _filing: dict[int, list[_Record]] = field(default_factory=dict)  # handed in, not committed
    _skipped_unfiled: bool = False  # a round left a user out: its outcome was not filed yet
    paused_on: str | None = None  # the run-level fault of the pause (told to other instances)
    resumed: bool = False  # a probe ended a pause since the other instances last heard
    # A shared queue (serve/sharing.py): this pause was another instance's fault (not told
    # back); this instance's own fault is not told yet; the shared pause ended: probe now.
    borrowed: bool = False
    untold: bool = False
    recheck: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def app(self) -> str:
        return self.cfg.subdomain

    @property
    def in_flight(self) -> int:
        """Requests to User.com on the wire now (at most --concurrency; 0 while the lanes wait
        out an outage): events handed to a round may be waiting for their turn, or the pause."""
        return 0 if self._wire is None else self._wire.on_the_wire

    @property
    def waiting_for(self) -> str | None:
        """Why delivery waits, for `/health`: a run-level fault, or an outage the lanes are
        riding out (once a probe has failed: the first probe is only a suspicion)."""
        if self.paused is not None:
            return self.paused
        pause = None if self.state is None else self.state.outage.watch.pause()
        if pause is None or pause.reason == "probing":
            return None
        return f"outage: {pause.reason}; {PAUSED_TAIL}"

    def delivery_options(self, concurrency: int | None = None) -> DeliveryOptions:
        return DeliveryOptions(
            concurrency=concurrency or self.options.concurrency,
            rate=self.options.rate,
            base_url=self.options.base_url,
            probe=False,
            max_outage=self.options.max_outage,
            max_seconds=self.options.event_seconds,
            max_attempts=self.options.event_attempts,
        )

    @property
    def target(self) -> Target:
        return Target.of(self.cfg, self.options.base_url)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until the service stops: probe, then rounds; pause on a run-level fault."""
        self.state = AppState.new(self.delivery_options())
        self.state.outage.heard = self._outage_heard
        self._wire = Wire.of(self.cfg, self.options.base_url, self.options.concurrency)
        self.metrics.in_flight.labels(app=self.app).set_function(lambda: self.in_flight)
        seats = (
            [asyncio.create_task(meetings(self, self.ledger.shared_budget()))]
            if isinstance(self.ledger, PgLedger)
            else []
        )
        try:
            await self._probe_until_ok(first=True)
            while not self.stopping.is_set():
                if self.ledger_fault is not None:
                    await self._until_the_ledger_works()
                    continue
                if self.fault is not None:
                    await self._settle_fault()
                    continue
                if self.paused is not None:
                    await self._probe_until_ok(first=False)
                    continue
                self.wake.clear()
                if len(self.rounds) < MAX_ROUNDS:
                    try:
                        if await self._start_round():
                            continue  # a full page: more may be waiting
                    except Exception as error:  # noqa: BLE001 - a bug or a ledger error: log, go on
                        if ledger_trouble(error):
                            self.ledger_failed(ledger_reason(error, "be read"))
                            continue
                        emit(logging.ERROR, "delivery_error", app=self.app, error=repr(error))
                        await self._sleep(self.options.probe_initial)
                        continue
                await self._wait()
        finally:
            self.stop()
            if self.rounds:
                await asyncio.wait([r.task for r in self.rounds])
            await self._flush()
            if self._outbox:
                emit(
                    logging.ERROR,
                    "outcomes_not_filed",
                    app=self.app,
                    count=len(self._outbox),
                    hint="the ledger could not commit them: those events are sent again at the "
                    "next start",
                )
            await self._wire.aclose()
            for seat in seats:
                seat.cancel()  # it leaves the budget's meetings on its way out
            if seats:
                await asyncio.wait(seats)

    def stop(self) -> None:
        """Stop the rounds in progress: no new attempt starts, in-flight ones end."""
        for running in self.rounds:
            running.control.stop("the service is stopping")

    async def _settle_fault(self) -> None:
        """A round met a run-level fault: stop the others, then pause (and probe)."""
        fault, self.fault = self.fault, None
        self.stop()
        if self.rounds:
            await asyncio.wait([r.task for r in self.rounds])
        if fault is not None:
            self._pause(fault)

    async def _wait(self) -> None:
        """Until new events arrive, a round ends, a failed event is due, or the service stops."""
        timeout = None if self.next_due is None else max(0.05, self.next_due - time.time())
        if shared(self.ledger):  # other instances store events for lanes this one may claim
            timeout = SHARED_POLL_S if timeout is None else min(timeout, SHARED_POLL_S)
        waits = [
            asyncio.ensure_future(self.wake.wait()),
            asyncio.ensure_future(self.stopping.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if self.next_due is not None and self.next_due <= time.time():
            self.next_due = None
            self.wake.forget()  # a failed event came due: look from the front

    async def _sleep(self, seconds: float, cut_short: asyncio.Event | None = None) -> None:
        if cut_short is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)
            return
        waits = [
            asyncio.ensure_future(self.stopping.wait()),
            asyncio.ensure_future(cut_short.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def _outage_heard(self, reason: str | None) -> None:
        """The lanes wait out an outage silently: say when one is known, and when it ends."""
        if reason is None:
            emit(
                logging.WARNING, "delivery_outage_over", app=self.app, after="a probe was answered"
            )
            return
        emit(
            logging.ERROR,
            "delivery_outage",
            app=self.app,
            reason=reason,
            hint=f"every lane waits and probes; events stay queued; paused after --max-outage "
            f"({self.options.max_outage:.0f} s)",
        )

    def _pause(self, fault: str) -> None:
        self.paused_on = fault
        self.untold = not self.borrowed
        reason = pause_reason(fault)
        if self.paused != reason:
            emit(logging.ERROR, "delivery_paused", app=self.app, reason=reason)
        self.paused = reason
        self.metrics.paused.labels(app=self.app).set(1)

    async def _probe_until_ok(self, *, first: bool) -> None:
        """Probe (at start, or while paused) until User.com answers it, with a doubling wait."""
        wait = self.options.probe_initial
        rechecked = False  # one early probe per pause when the shared pause ends: no storm
        self.recheck.clear()
        while not self.stopping.is_set():
            if not first:
                await self._sleep(wait, None if rechecked else self.recheck)
                if self.stopping.is_set():
                    return
                rechecked = rechecked or self.recheck.is_set()
                wait = min(wait * 2, self.options.probe_max)
            first = False
            problem = await self.probe()
            self.borrowed = False  # from here on the pause is what this instance's probe met
            if problem is None:
                if self.paused is not None:
                    emit(logging.WARNING, "delivery_resumed", app=self.app)
                    self.resumed = True
                self.paused = self.paused_on = None
                self.metrics.paused.labels(app=self.app).set(0)
                if self.state is not None:
                    self.state.outage.watch.probe_answered()  # whatever outage there was is over
                return
            self._pause(problem)

    async def probe(self) -> str | None:
        """`usercom check`'s read; the problem it shows (a 5xx or 429 is one too), or None."""
        if self._wire is None:
            return "not started"
        target = self.target
        answer = (await self._wire.probe_once()).answer
        fault = probe_fault(answer, target)
        if fault is not None:
            return fault
        match answer:
            case Reply(status=status) if status in (200, 404):
                return None
            case Reply(status=status):
                return f"User.com at {target.origin} answered the probe with {status}"
            case Unreachable(reason=reason, detail=detail):
                return f"User.com could not be reached ({reason}: {detail})"

    # -- a ledger that cannot commit or be read --------------------------------------------------

    def ledger_failed(self, reason: str) -> None:
        """The ledger cannot commit or be read: pause delivery (and ingest) until it can. The
        rounds stop starting attempts; the loop then checks the ledger until it works."""
        if self.ledger_fault != reason:
            emit(logging.ERROR, "delivery_paused", app=self.app, reason=reason)
        self.ledger_fault = self.paused = reason  # /health shows it: it stops ingest too
        self.metrics.paused.labels(app=self.app).set(1)
        for running in self.rounds:
            running.control.stop("the ledger cannot commit")
        self.wake.set()

    async def _until_the_ledger_works(self) -> None:
        """Wait for the rounds to end, then file the kept outcomes and check the ledger (a
        commit, a read of the queue) with a doubling wait until it works; then resume."""
        if self.rounds:
            await asyncio.wait([r.task for r in self.rounds])
        self.paused = self.ledger_fault  # a probe that succeeded meanwhile cleared it
        wait = LEDGER_RETRY_FIRST_S
        while not self.stopping.is_set() and self.ledger_fault is not None:
            await self._sleep(wait)
            wait = min(wait * 2, LEDGER_RETRY_MAX_S)
            if not self.stopping.is_set() and await self._ledger_works():
                # A fault of User.com met before is met again by the next round, and pauses.
                emit(logging.WARNING, "delivery_resumed", app=self.app, after="the ledger works")
                self.ledger_fault = self.paused = None
                self.metrics.paused.labels(app=self.app).set(0)
                self.wake.set()

    async def _ledger_works(self) -> bool:
        """File what is kept, then commit a small write and read the queue's first page."""
        await self._flush()
        if self._outbox:
            return False
        doing = "commit"
        try:
            await self.store.call(self.ledger.touch, writes=True)
            doing = "be read"
            await self.store.call(self._page(0), writes=False)
        except Exception as error:
            if not ledger_trouble(error):
                raise
            self.ledger_failed(ledger_reason(error, doing))
            return False
        return True

    def _unfiled_lanes(self) -> set[str]:
        handed = (record for batch in self._filing.values() for record in batch)
        return {record.lane for record in (*handed, *self._outbox)}

    # -- rounds --------------------------------------------------------------------------------

    async def _start_round(self) -> bool:
        """Take, in position order, up to a page of due events of users (and companies) no
        running round holds, and deliver them in a round of their own. True when the page
        was full (more may be waiting)."""
        unfiled = self._unfiled_lanes()  # never attempted again before its outcome is on disk
        picking = Picking(
            {lane for r in self.rounds for lane in r.lanes} | unfiled,
            {company for r in self.rounds for company in r.companies},
        )
        taken: list[tuple[Incoming, _Filed]] = []
        # Another instance may let users go at any time: a shared queue is looked at whole.
        token = self.wake.looking()
        after = 0 if shared(self.ledger) else self.wake.held_through
        scanned = 0
        all_held = True
        now = time.time()
        while len(taken) < self.options.page and scanned < SCAN_PAGES * self.options.page:
            page = await self.store.call(self._page(after), writes=False)
            if not page:
                break
            after = page[-1].row.position
            scanned += len(page)
            for item, filed in await asyncio.to_thread(self._build, page, now):
                placed = picking.place(item)
                # Held by its user only: one held by a company may be let go unseen by its
                # user's later events, which a look from here would then take out of order.
                all_held &= placed == "busy" and item.lane in picking.busy_lanes
                if placed == "take":
                    taken.append((item, filed))
                elif placed == "busy":
                    self._skipped_unfiled |= item.lane in unfiled
                elif isinstance(placed, Held):
                    self._hold(item, filed, placed)
        self.wake.looked(token, after if all_held and not shared(self.ledger) else 0)
        if not taken or self.ledger_fault is not None:  # it failed while the page was read
            return False
        for item, filed in taken:
            self._filed[item.key] = filed
        items = [item for item, _ in taken]
        # On a shared queue no request starts for a lane whose lease may have lapsed (§7).
        fenced = self.ledger.licensed if isinstance(self.ledger, PgLedger) else None
        running = _Round.of(items, fenced)
        running.task = asyncio.create_task(self._round(running, items))
        self.rounds.append(running)
        return len(taken) >= self.options.page

    async def _round(self, running: _Round, items: list[Incoming]) -> None:
        try:
            fault = await self._deliver(running, items)
            if fault is not None and self.fault is None:
                self.fault = fault
        except Exception as error:  # noqa: BLE001 - a bug or a ledger error: log, go on
            emit(logging.ERROR, "delivery_error", app=self.app, error=repr(error))
        finally:
            self.rounds.remove(running)  # its users are free once its outcomes are filed
            self.wake.set()

    def _page(self, after: int) -> Callable[[], list[Queued]]:
        return lambda: self.ledger.take(after, self.options.page)

    def _build(self, page: Sequence[Queued], now: float) -> list[tuple[Incoming, _Filed]]:
        """The page's events as the engine takes them (runs in a worker thread): a failed
        event not due yet is `deferred` (it holds its user), one past --give-up-after left out."""
        items: list[tuple[Incoming, _Filed]] = []
        for queued in page:
            row = queued.row
            ready = readiness(
                queued,
                now,
                retry_delay=self.options.retry_delay,
                give_up_after=self.options.give_up_after,
            )
            if ready.kind == "given up":
                self._give_up(row.key, row.position, row.error)
                continue  # stays failed, holds nobody
            item = self._parse(row.key, row.content_hash, row.position, row.line, row.error)
            if ready.kind == "later" and ready.at is not None:
                self._due(ready.at)
                item = replace(item, deferred=f"failed; tried again after {_when(ready.at)}")
            kind = event_type(item)
            filed = _Filed(row.status, row.attempts, ready.received, kind, queued.failures)
            items.append((item, filed))
        return items

    def _hold(self, item: Incoming, filed: _Filed, held: Held) -> None:
        """File `held` for an event behind its user's failed one (once: held stays held)."""
        if filed.status == "held":
            return
        self._filed[item.key] = filed
        self._file(item, Outcome(item.key, "held", 0, (), held.reason, position=item.position))

    def _due(self, when: float) -> None:
        self.next_due = when if self.next_due is None else min(self.next_due, when)

    def _parse(
        self, key: str, content_hash: str, position: int, line: bytes, error: str | None
    ) -> Incoming:
        cached = self._parsed.get((key, content_hash, position))
        if cached is not None:
            self._parsed.move_to_end((key, content_hash, position))
            return cached
        item = stored(self.cfg, key, content_hash, position, line, error)
        self._parsed[(key, content_hash, position)] = item
        while len(self._parsed) > PARSED_KEEP:
            self._parsed.popitem(last=False)
        return item

    async def _deliver(self, running: _Round, items: list[Incoming]) -> str | None:
        if self.stopping.is_set():
            running.control.stop("the service is stopping")

        def on_outcome(item: Incoming, outcome: Outcome) -> None:
            self._file(item, outcome)  # before its user is let go: the outbox holds it now
            if running.done(item):
                self.wake.set()
            else:  # its user may be let go without a wake: look from the front next time
                self.wake.forget()

        options = self.delivery_options()
        try:
            summary = await deliver(
                items,
                self.cfg,
                options,
                on_outcome,
                wire=self._wire,
                control=running.control,
                app=self.state,
            )
        finally:
            await self._flush()
        self._account(summary)
        return summary.fault

    def _account(self, summary: Summary) -> None:
        for (endpoint, status), count in summary.calls.items():
            self.metrics.api_calls.labels(app=self.app, endpoint=endpoint, status=status).inc(count)
        if self.state is not None:
            throttled = self.state.pacer.throttled
            if throttled > self._throttled:
                self.metrics.throttled.labels(app=self.app).inc(throttled - self._throttled)
            self._throttled = throttled

    # -- filing outcomes -----------------------------------------------------------------------

    def _file(self, item: Incoming, outcome: Outcome) -> None:
        """Queue the outcome for the ledger (held twice and pending are not filed again)."""
        filed = self._filed.pop(item.key, None)
        before = filed.status if filed is not None else "pending"
        happening = happening_of(outcome.status)
        if happening is None or not files(before, happening):
            return
        attempts = outcome.attempts
        if before == "failed" and filed is not None:
            attempts += filed.attempts
        filing = replace(record_of(item, outcome), attempts=attempts)
        self._outbox.append(_Record(filing, item.lane))
        kind = filed.type if filed is not None else event_type(item)
        labels = {"app": self.app, "type": kind}
        if outcome.status == "delivered":
            self.metrics.delivered.labels(**labels).inc()
        elif outcome.status == "rejected":
            self.metrics.rejected.labels(**labels).inc()
            emit(
                logging.WARNING,
                "event_rejected",
                app=self.app,
                id=item.key,
                type=kind,
                position=item.position,
                error=outcome.error,
            )
        elif outcome.status == "failed":
            self.metrics.failed.labels(**labels).inc()
            received = filed.received if filed is not None else None
            if received is not None and time.time() - received > self.options.give_up_after:
                self._give_up(item.key, item.position, outcome.error)
            else:
                failures = (filed.failures if filed is not None else 0) + 1
                due = time.time() + self.options.retry_delay(failures)
                self._due(due)
                emit(
                    logging.WARNING,
                    "event_failed",
                    app=self.app,
                    id=item.key,
                    type=kind,
                    position=item.position,
                    attempts=attempts,
                    retry_at=_when(due),
                    error=outcome.error,
                )
        paused = self.ledger_fault is not None  # then the loop files what is kept, not each one
        if not paused and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.ensure_future(self._flush_outbox())

    def _give_up(self, key: str, position: int, error: str | None) -> None:
        """Say once that a failed event is past --give-up-after and no longer tried."""
        if key in self._given_up:
            return
        self._given_up.add(key)
        self.metrics.given_up.labels(app=self.app).inc()
        emit(
            logging.ERROR,
            "event_given_up",
            app=self.app,
            id=key,
            position=position,
            error=error,
            hint="no longer tried: see usercom failed, usercom requeue",
        )

    async def _flush(self) -> None:
        while self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)
        if self._outbox:
            await self._flush_outbox()

    async def _flush_outbox(self) -> None:
        """File what is waiting; when the ledger cannot commit, keep it (for the next try) and
        pause: an outcome lost here would have its event sent again."""
        while self._outbox:
            batch, self._outbox = self._outbox, []
            self._filing[id(batch)] = batch
            try:
                filed = await self.store.call(partial(self._record, batch), writes=True)
            except Exception as error:  # noqa: BLE001 - whatever it is, they are not on disk
                self._outbox[:0] = batch
                self.ledger_failed(ledger_reason(error, "commit"))
                return
            finally:
                del self._filing[id(batch)]
            self.queued -= filed
            self.metrics.queued.labels(app=self.app).set(self.queued)
        if self._skipped_unfiled:  # a user left out for its unfiled outcome is free again
            self._skipped_unfiled = False
            self.wake.set()

    def _record(self, batch: Sequence[_Record]) -> int:
        """File outcomes (on the ledger thread); how many events left the queue. An outcome of
        content that was replaced meanwhile (sent again, edited) is not filed."""
        return self.ledger.file([record.filing for record in batch])

    # -- what ingest and the probes read ---------------------------------------------------------

    def admitted(self, new: int, types: Counter[str]) -> None:
        """Ingest committed `new` queued events of this app: count them, wake the loop."""
        self.queued += new
        self.metrics.queued.labels(app=self.app).set(self.queued)
        for kind, count in types.items():
            self.metrics.received.labels(app=self.app, type=kind).inc(count)
        self.wake.arrived()
