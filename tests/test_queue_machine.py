"""The queue's rules as a state machine (DELIVERY §2, §4, §6) over a `DeliveryQueue` of each
backend (`open_queue`), delivering through the engine to `FakeUserCom`, on a fake clock.

The model is what the contract says, written here on its own: what an admission does to a
key, what an outcome may change (never a finished event; held stays held; an outcome of
replaced content changes nothing), what requeue does. After every step the queue must hold
exactly what the model holds. Delivery rounds are taken as the service takes them: the
queue's unfinished events in position order, a failed event tried again only once its
backoff passed (it holds its user meanwhile), none past --give-up-after.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace

import httpx
from conftest import QueueOpener
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pipeline.core.config import Config, parse_config
from pipeline.delivery.engine import AppState, DeliveryOptions, deliver
from pipeline.delivery.feed import unfinished
from pipeline.delivery.filing import record_of
from pipeline.delivery.incoming import Incoming, incoming, repeat_key, stored
from pipeline.delivery.lifecycle import FINISHED, UNFINISHED, Status
from pipeline.delivery.outcome import Outcome
from pipeline.delivery.queue import Admit, Arrival, DeliveryQueue, Record, readiness
from pipeline.delivery.rounds import Held, Picking
from pipeline.testing import FakeUserCom

USERS = ("ann", "bob", "cyd")
MESSAGES = 6  # message ids m0..m5; m<n> belongs to USERS[n % 3]
GIVE_UP_AFTER = 3600.0
OPTIONS = DeliveryOptions(
    concurrency=2, max_attempts=1, probe=False, backoff_initial=0.0, backoff_max=0.0
)


def retry_delay(failures: int) -> float:
    return float(min(60.0 * 2.0 ** (failures - 1), 600.0))


class Clock:
    """The fake clock: what the queue stamps and the rounds read."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Flaky(httpx.AsyncBaseTransport):
    """FakeUserCom, with the users in `broken` answered 503 (retryable trouble of theirs)."""

    def __init__(self, fake: FakeUserCom) -> None:
        self.fake = fake
        self.broken: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        for user in self.broken:
            if f"/{user}/" in request.url.path or json.dumps(user).encode() in body:
                return httpx.Response(503, json={"detail": "Service unavailable"})
        return await self.fake.handle_async_request(request)


@dataclass(frozen=True, slots=True)
class Holds:
    """What the model says the queue holds under one key."""

    status: Status
    content_hash: str
    position: int
    error: str | None = None


def line_of(message: int, variant: int, kind: str) -> bytes:
    user = USERS[message % len(USERS)]
    event: dict[str, object] = {"type": kind, "userId": user, "messageId": f"m{message}"}
    if kind == "track":
        event["event"] = f"Variant {variant}"
    else:
        event["traits"] = {"variant": variant}
    return json.dumps(event).encode()


class QueueMachine(RuleBasedStateMachine):
    """One app's queue, its model, a FakeUserCom behind `Flaky`, and the fake clock."""

    def __init__(self, opener: QueueOpener, app: str) -> None:
        super().__init__()
        self.clock = Clock()
        self.cfg: Config = parse_config({"apiKey": "k" * 64, "appSubdomain": app}).unwrap()
        self.queue: DeliveryQueue = opener(app, self.clock)
        self.transport = Flaky(FakeUserCom())
        self.model: dict[str, Holds] = {}
        self.top = 0  # the last position given
        self.filed: list[Record] = []  # every outcome filed so far

    def teardown(self) -> None:
        self.queue.close()

    # -- rules ------------------------------------------------------------------------------

    @rule(
        events=st.lists(
            st.tuples(
                st.integers(0, MESSAGES - 1),
                st.integers(0, 1),
                st.sampled_from(["identify", "identify", "track"]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def admit(self, events: list[tuple[int, int, str]]) -> None:
        """One request's events, admitted together (a key met twice is decided against what
        the first one stored)."""
        read = [incoming(self.cfg, 0, line_of(*event)) for event in events]
        arrivals = [Arrival(event.key, event.content_hash, event.line) for event in read]
        admitted = self.queue.admit(arrivals, received=self.clock.now)
        self.queue.commit()
        for event, done in zip(read, admitted, strict=True):
            self._admitted(event, done.key, done.verdict)

    def _admitted(self, event: Incoming, key: str, verdict: Admit) -> None:
        before = self.model.get(event.key)
        later = repeat_key(event.key, event.content_hash)
        if before is None:
            assert verdict is Admit.NEW
            self._stored(event.key, event.content_hash, "pending")
        elif before.content_hash == event.content_hash:
            # §4: identical events are one event; §2: final means final for that content.
            assert verdict is Admit.KNOWN
        elif before.status in UNFINISHED:
            # The first version is the event: the later one is rejected under its own key,
            # once (sent again, it is a retry of that later version).
            assert key == later
            if later in self.model:
                assert verdict is Admit.KNOWN
            else:
                assert verdict is Admit.REPEATED
                self._stored(later, event.content_hash, "rejected")
        else:
            assert verdict is Admit.CHANGED  # §2: edited since: attempted again
            self._stored(event.key, event.content_hash, "pending")

    @rule(user=st.sampled_from(USERS), broken=st.booleans())
    def user_com_answers(self, user: str, broken: bool) -> None:
        """User.com answers this user's requests 503 (retryable trouble of its own), or again."""
        if broken:
            self.transport.broken.add(user)
        else:
            self.transport.broken.discard(user)

    @rule(seconds=st.sampled_from([1.0, 90.0, 700.0, 4000.0]))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(data=st.data(), everything=st.booleans(), rejected=st.booleans())
    def requeue(self, data: st.DataObject, everything: bool, rejected: bool) -> None:
        """`usercom requeue`: every failed and held event (and rejected ones when asked), or
        one named key whatever its status."""
        if everything or not self.model:
            chosen = ("failed", "held", "rejected") if rejected else ("failed", "held")
            expected = [key for key, held in self.model.items() if held.status in chosen]
            assert self.queue.requeue(None, rejected=rejected) == len(expected)
        else:
            key = data.draw(st.sampled_from(sorted(self.model)))
            expected = [key] if self.model[key].status != "pending" else []
            assert self.queue.requeue([key], rejected=False) == len(expected)
        for key in expected:
            self.model[key] = replace(self.model[key], status="pending")

    @rule()
    def deliver_round(self) -> None:
        items, held = self._round()
        outcomes: list[tuple[Incoming, Outcome]] = []
        summary = asyncio.run(
            deliver(
                items,
                self.cfg,
                OPTIONS,
                lambda item, outcome: outcomes.append((item, outcome)),
                transport=self.transport,
                app=AppState.new(OPTIONS),
            )
        )
        assert summary.fault is None
        assert len(outcomes) == len(items)  # one outcome per event per run
        self._check_order(outcomes)
        records = [*held, *(record_of(item, outcome) for item, outcome in outcomes)]
        self._file(records)

    @precondition(lambda self: bool(self.filed))
    @rule(data=st.data(), status=st.sampled_from(["delivered", "rejected", "failed", "held"]))
    def late_outcome(self, data: st.DataObject, status: Status) -> None:
        """A late outcome of an earlier attempt of the same content (a writer whose lease
        expired, a retry after a lost commit answer): it may change nothing finished."""
        earlier = data.draw(st.sampled_from(self.filed))
        self._file([replace(earlier, status=status)])

    def _file(self, records: list[Record]) -> None:
        finishing = [r.key for r in records if self.model[r.key].status in UNFINISHED]
        finished_before = sum(self.model[key].status in FINISHED for key in self.model)
        left = self.queue.file(records)
        self.queue.commit()
        for record in records:
            self._filed(record)
        finished_now = sum(self.model[key].status in FINISHED for key in self.model)
        assert left == finished_now - finished_before
        assert left <= len(set(finishing))
        self.filed.extend(records)

    # -- the round, as the service takes it -----------------------------------------------

    def _round(self) -> tuple[list[Incoming], list[Record]]:
        """The due events to deliver, and the held outcomes of those behind a failed event
        that is not due yet (it holds its user: §2 held, §6 backoff)."""
        items: list[Incoming] = []
        held: list[Record] = []
        picking = Picking()  # no round runs meanwhile: nothing is busy
        taken = unfinished(self.queue)
        assert [q.row.key for q in taken] == self._unfinished_keys()  # position order
        for queued in taken:
            row = queued.row
            ready = readiness(
                queued, self.clock.now, retry_delay=retry_delay, give_up_after=GIVE_UP_AFTER
            )
            if ready.kind == "given up":
                continue  # stays failed and holds nobody
            item = stored(self.cfg, row.key, row.content_hash, row.position, row.line, row.error)
            if ready.kind == "later":
                item = replace(item, deferred="failed; not due yet")
            placed = picking.place(item)
            assert placed != "busy"
            if placed == "take":
                items.append(item)
            elif isinstance(placed, Held):
                reason = placed.reason
                held.append(Record(row.key, row.content_hash, row.line, "held", 0, (), reason, ()))
        return items, held

    def _check_order(self, outcomes: list[tuple[Incoming, Outcome]]) -> None:
        """§2 per-user order: a user's events end in position order, and once one fails the
        later ones of that user are held, never attempted."""
        last: dict[str, int] = {}
        failed: set[str] = set()
        for item, outcome in outcomes:
            assert item.position > last.get(item.lane, 0)
            last[item.lane] = item.position
            if item.lane in failed:
                assert outcome.status == "held"
                assert outcome.attempts == 0
            if outcome.status in ("failed", "held"):
                failed.add(item.lane)

    # -- the model -------------------------------------------------------------------------

    def _stored(self, key: str, content_hash: str, status: Status) -> None:
        self.top += 1
        self.model[key] = Holds(status, content_hash, self.top)

    def _filed(self, record: Record) -> None:
        """What an outcome changes, as the contract says it."""
        was = self.model[record.key]
        if was.content_hash != record.content_hash:
            return  # an outcome of content replaced meanwhile
        if was.status in FINISHED:
            return  # never two finished outcomes for one event
        if record.status in ("pending", "planned"):
            return  # deferred: nothing to write
        if was.status == "held" and record.status == "held":
            return  # held stays held, its first blocker kept
        assert record.status in ("delivered", "rejected", "failed", "held")
        self.model[record.key] = replace(was, status=record.status)

    def _unfinished_keys(self) -> list[str]:
        chosen = [
            (held.position, key) for key, held in self.model.items() if held.status in UNFINISHED
        ]
        return [key for _, key in sorted(chosen)]

    # -- what must always hold -------------------------------------------------------------

    @invariant()
    def the_queue_holds_what_the_model_holds(self) -> None:
        stored_rows = {row.key: row for row in self.queue.rows()}
        assert set(stored_rows) == set(self.model)
        for key, held in self.model.items():
            row = stored_rows[key]
            assert (row.status, row.content_hash, row.position) == (
                held.status,
                held.content_hash,
                held.position,
            ), key

    @invariant()
    def counts_add_up(self) -> None:
        counts = self.queue.counts()
        for status in (*FINISHED, *UNFINISHED):
            assert counts[status] == sum(h.status == status for h in self.model.values())


def test_the_queue_keeps_the_rules_of_an_events_life(open_queue: QueueOpener) -> None:
    made = iter(range(1_000_000))

    class OnThisBackend(QueueMachine):
        def __init__(self) -> None:
            super().__init__(open_queue, f"app{next(made)}")

    run_state_machine_as_test(
        OnThisBackend,
        settings=settings(
            max_examples=20,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
