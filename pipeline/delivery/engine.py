"""The delivery engine: sends events for real, one lane per user, with retries and a rate limit.

Events of one user run in input order in their lane; lanes run concurrently (at most
`concurrency` at once). The reader is held back when `buffer` events are waiting, so memory
stays flat on any input size. Only retryable failures (SPEC §10) are retried, with
exponential backoff and jitter, never sooner than User.com's Retry-After. An event that ends
`failed` holds the later events of its user (DELIVERY §2). A run-level fault (DELIVERY §3) or
a stop request ends the run: no new attempt starts, and unattempted events stay `pending`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import httpx
from returns.result import Failure, Result, Success
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from pipeline.core import errors
from pipeline.core.answers import FAILING, Answer, Reply, answer_error, meaning
from pipeline.core.calls import Request
from pipeline.core.compose import Job
from pipeline.core.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.steps import Final, Step
from pipeline.delivery.faults import RunFault
from pipeline.delivery.identity import IdentityCache
from pipeline.delivery.incoming import Incoming
from pipeline.delivery.outage import Outage, Prober, Verdict
from pipeline.delivery.outcome import Exchange, Outcome, Status, Summary
from pipeline.delivery.pacing import Pacer
from pipeline.delivery.rounds import Held
from pipeline.delivery.wire import Sent, Wire
from pipeline.runner import adrive, scrub

Attempt = Result[Final, PipelineError]


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    concurrency: int = 8
    rate: float | None = None  # requests per second over the whole run
    max_attempts: int = 6
    max_seconds: float = 120.0  # per event, retries included
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    buffer: int = 0  # events read ahead; 0 means 16 x concurrency
    base_url: str | None = None  # another origin (the sandbox); outcomes keep real URLs
    probe: bool = True  # start with `usercom check`'s authenticated read
    max_outage: float = 1800.0  # seconds of outage (DELIVERY §3) before the run stops
    max_resends: int = 50  # 429s one request may meet before it counts as a failed attempt
    stop_grace: float = 5.0  # seconds in-flight requests get after a stop, then they are left


@dataclass(slots=True)
class Control:
    """How a caller stops a run from outside (a signal handler): no new attempt starts."""

    reason: str | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # A shared queue's lease check (DELIVERY §7): whether this instance still knows it holds
    # the lane (and company) of an event, looked at before each of its requests goes out. An
    # instance whose lease lapsed must not write behind the back of the one that took over.
    licensed: Callable[[str, str | None], bool] | None = None

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.stopping.set()


COMPANY_WRITES = frozenset({"create_company", "update_company"})


def _user_com_failed(answer: Answer) -> bool:
    """A 5xx, a timeout or a lost connection: what an outage is made of."""
    return meaning(answer) in FAILING


class Stopped(Exception):
    """The run is stopping: this attempt does not start."""


class LeaseLost(Stopped):
    """This instance no longer knows it holds the event's lane: its request does not start,
    and the event stays pending for whoever holds the lane now."""


def _retryable(result: Attempt) -> bool:
    return isinstance(result, Failure) and result.failure().retryable


def _last_result(state: RetryCallState) -> Attempt:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return Failure(errors.retryable("the delivery attempt did not finish"))
    result: Attempt = outcome.result()
    return result


@dataclass(slots=True)
class AppState:
    """What one User.com app's deliveries learn and keep across runs: the pace its limit
    allows, the users and companies it knows, and whether it is paused for an outage.
    `usercom send` makes one per run; the service keeps one per app for its lifetime, shared
    by every delivery round."""

    pacer: Pacer
    cache: IdentityCache = field(default_factory=IdentityCache)
    outage: Outage = field(default_factory=Outage)

    @classmethod
    def new(cls, options: DeliveryOptions) -> AppState:
        return cls(Pacer(cap=options.rate))


class _Run:
    """The mutable state of one run: counters, lanes, slots. Created per `deliver` call."""

    def __init__(
        self, cfg: Config, options: DeliveryOptions, control: Control, app: AppState, wire: Wire
    ) -> None:
        self.cfg = cfg
        self.control = control
        # Lanes with a failed or held event in this run, and the key that holds them.
        self.blocked: dict[str, str] = {}
        self.options = options
        self.wire = wire
        self.target = wire.target
        self.pacer = app.pacer
        self.cache = app.cache
        self.outage = app.outage
        self.prober = Prober(self._probe, self.target, control.stopping, options.max_outage)
        # Lanes waiting for an answer, so that a stop can leave them after its grace.
        self.requesting: set[asyncio.Task[object]] = set()
        self.abandoned = False
        self.summary = Summary()
        # Group events of different users may name one company: one writer per company at a
        # time, or two lanes could both find it missing and both create it.
        self.company_locks: dict[str, asyncio.Lock] = {}
        self.backoff = wait_exponential(
            multiplier=options.backoff_initial, max=options.backoff_max
        ) + wait_random(0, options.backoff_initial)

    def _fault(self, fault: str) -> RunFault:
        self.summary.fault = self.summary.fault or fault
        self.control.stop(fault)
        return RunFault(fault)

    def _follow(self, verdict: Verdict) -> None:
        """Raise what a stopping verdict of the outage watch means for this request."""
        if verdict.kind == "fault":
            raise self._fault(verdict.fault)
        if verdict.kind == "stopped" or self.control.reason is not None:
            raise Stopped

    def _unless_stopping(self) -> None:
        """The last look before a request goes on the wire. Every lane may wait for a free
        connection slot, for as long as the requests before it take: a stop that came while
        it waited means it does not start (its event stays pending, DELIVERY §4)."""
        if self.control.reason is not None:
            raise Stopped

    def look_for(self, lane: str, company: str | None) -> Callable[[], None]:
        """An event's last look before each of its requests (and before each attempt): the
        run is not stopping, and its lane's lease (a shared queue's) is still known to hold;
        a request may have waited long for the pace, a slot or an outage meanwhile."""
        licensed = self.control.licensed

        def look() -> None:
            self._unless_stopping()
            if licensed is not None and not licensed(lane, company):
                raise LeaseLost

        return look

    async def _probe(self) -> Answer:
        """The start probe's read, made while the lanes pause: counted like any call."""
        sent = await self.wire.probe_once()
        answer = sent.answer
        self.summary.api_calls += 1
        self.summary.calls[sent.exchange.endpoint, sent.exchange.answer] += 1
        if isinstance(answer, Reply) and meaning(answer) == "throttled":
            self.pacer.too_many(answer.retry_after)
        return answer

    async def _ask(self, request: Request, look: Callable[[], None]) -> Sent:
        """The request's answer, on a free connection slot; `Stopped` when a stop came while
        it waited for the slot, or when a stop's grace ran out before the answer came (its
        event stays pending: a write may have landed, as with a kill, at least once)."""
        lane = asyncio.current_task()
        if lane is None:
            return await self.wire.send(request, ready=look)

        def ready() -> None:
            look()
            self.requesting.add(lane)

        try:
            return await self.wire.send(request, ready=ready)
        except asyncio.CancelledError:
            if not self.abandoned:
                raise
            lane.uncancel()
            raise Stopped from None
        finally:
            self.requesting.discard(lane)

    async def unless_stopped(self, probing: Awaitable[str | None]) -> str | None:
        """The start probe's fault, or None when the run is stopped first: a probe to a host
        that never answers would hold a signal for its timeouts, three times over."""
        task = asyncio.ensure_future(probing)
        stop = asyncio.ensure_future(self.control.stopping.wait())
        try:
            await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
        return task.result() if task.done() and not task.cancelled() else None

    async def leave_after_grace(self) -> None:
        """Once the run is told to stop, give in-flight requests `stop_grace`, then leave them."""
        await self.control.stopping.wait()
        await asyncio.sleep(self.options.stop_grace)
        self.abandoned = True
        for lane in list(self.requesting):
            lane.cancel()

    async def send(self, request: Request, log: list[Exchange], look: Callable[[], None]) -> Answer:
        """Send one request: paced, on a free connection slot, counted, logged, learned from.
        A 429 is waited out and sent again without costing the event an attempt. A failure
        (5xx, timeout, lost connection) is the event's own unless the outage watch pauses
        the lanes: then the probe decides (DELIVERY §3), and a request that waited out a
        real outage goes again at no cost. A run-level fault raises `RunFault`."""
        resends = 0
        while True:
            self._follow(await self.outage.clear(self.control.stopping))
            if not await self.pacer.acquire(self.control.stopping):
                raise Stopped
            sent = await self._ask(request, look)
            answer, exchange = sent.answer, sent.exchange
            self.summary.api_calls += 1
            self.summary.calls[exchange.endpoint, exchange.answer] += 1
            log.append(exchange)
            if sent.fault is not None:
                raise self._fault(sent.fault)
            if isinstance(answer, Reply) and meaning(answer) == "throttled":
                self.pacer.too_many(answer.retry_after)
                if resends < self.options.max_resends and self.control.reason is None:
                    resends += 1
                    continue
                return answer
            if _user_com_failed(answer):
                verdict = await self.outage.after_failure(self.prober)
                self._follow(verdict)
                if verdict.kind == "resend":
                    continue
                return answer
            self.pacer.good()
            self.outage.answered()
            self.cache.learn(request, answer)
            return answer

    async def attempt(self, job: Job, log: list[Exchange], look: Callable[[], None]) -> Attempt:
        """One attempt of the event's flow; the cache answers what it can, the final request
        is sent, and a 404 to a final request with a fallback (a route that may be missing)
        follows it.

        Group events that name a company not yet known take turns from its lookup until it
        is written, so two users never both create it; once it is known (the identity cache),
        their company writes run freely. Waiting for a turn, or for the pace, holds no
        connection: a slot is taken per request.
        """
        look()
        turn: asyncio.Lock | None = None

        async def ask(request: Request) -> Answer:
            nonlocal turn
            cached = self.cache.answer(request)
            if cached is not None:
                return cached
            if request.name == "company_by_id" and job.company is not None and turn is None:
                # Not known to exist: one event at a time looks it up and creates it.
                turn = self.company_locks.setdefault(job.company, asyncio.Lock())
                await turn.acquire()
                cached = self.cache.answer(request)  # created while this event waited?
                if cached is not None:
                    turn.release()
                    turn = None
                    return cached
            try:
                return await self.send(request, log, look)
            finally:
                if turn is not None and request.name in COMPANY_WRITES:
                    turn.release()
                    turn = None

        try:
            return await self._attempt_flow(job.step, ask, log, look)
        finally:
            if turn is not None:
                turn.release()

    async def _attempt_flow(
        self,
        step: Step,
        ask: Callable[[Request], Awaitable[Answer]],
        log: list[Exchange],
        look: Callable[[], None],
    ) -> Attempt:
        """The delivery conversation with the engine's policy: reads through `ask` (the cache,
        a company's turn), the final request straight out, paced and counted (`send`)."""

        async def send_final(final: Final) -> Answer:
            return await self.send(final.request, log, look)

        delivered = await adrive(Success(step), ask, send_final)
        if isinstance(delivered, Failure):
            return Failure(scrub(delivered.failure(), self.target))
        final, answer = delivered.unwrap()
        if meaning(answer) == "ok":
            return Success(final)
        return Failure(scrub(answer_error(answer, "delivering the event"), self.target))

    def wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, never sooner than Retry-After, capped."""
        result = _last_result(state)
        after = result.failure().retry_after if isinstance(result, Failure) else None
        return min(max(self.backoff(state), after or 0.0), self.options.max_seconds)

    def first_wait(self, result: Attempt) -> float:
        after = result.failure().retry_after if isinstance(result, Failure) else None
        jittered = self.options.backoff_initial * (1 + random.random())
        return min(max(jittered, after or 0.0), self.options.max_seconds)

    async def sleep(self, seconds: float) -> None:
        """Wait before a retry, but no longer than until the run is told to stop."""
        try:
            await asyncio.wait_for(self.control.stopping.wait(), seconds)
        except TimeoutError:
            return

    async def deliver_one(self, incoming: Incoming) -> Outcome:
        """The event's outcome; `held` when an earlier event of its user did not finish."""
        key, position = incoming.key, incoming.position
        if incoming.deferred is not None:
            # Failed earlier and not due yet: not attempted now, and it holds its user.
            self.blocked.setdefault(incoming.lane, key)
            return Outcome(key, "failed", 0, (), incoming.deferred, position=position)
        if self.control.reason is not None:
            return Outcome(key, "pending", position=position)
        match incoming.job:
            case None:
                return Outcome(key, "rejected", 0, (), incoming.problem, position=position)
            case Failure(problem):
                return Outcome(key, "rejected", 0, (), problem.message, position=position)
            case Success(Job() as job):
                blocker = self.blocked.get(incoming.lane)
                if blocker is not None:
                    held = Held(blocker).reason
                    return Outcome(key, "held", 0, (), held, position=position)
                look = self.look_for(incoming.lane, incoming.company)
                outcome = await self.deliver_job(key, position, job, look)
                if outcome.status in ("failed", "pending"):
                    self.blocked[incoming.lane] = key
                return outcome
        return Outcome(key, "rejected", 0, (), "not understood", position=position)

    async def deliver_job(
        self, key: str, position: int, job: Job, look: Callable[[], None]
    ) -> Outcome:
        log: list[Exchange] = []
        attempts = 1
        try:
            result = await self.attempt(job, log, look)
            if _retryable(result) and self.options.max_attempts > 1:
                # Most events succeed at once; tenacity takes over only when a retry is due.
                await self.sleep(self.first_wait(result))
                retrying = AsyncRetrying(
                    stop=stop_after_attempt(self.options.max_attempts - 1)
                    | stop_after_delay(self.options.max_seconds),
                    wait=self.wait,
                    sleep=self.sleep,
                    retry=retry_if_result(_retryable),
                    retry_error_callback=_last_result,
                )
                result = await retrying(self.attempt, job, log, look)
                attempts += int(retrying.statistics.get("attempt_number", 1))
        except (RunFault, Stopped):
            # Not this event's fault: it stays pending, to be tried when the run resumes. One
            # stopped before its first request went out was not attempted at all.
            tried = attempts if log or self.abandoned else 0
            return Outcome(key, "pending", tried, tuple(log), None, position=position)
        match result:
            case Success(final):
                return Outcome(
                    key, "delivered", attempts, tuple(log), None, final.warnings, position
                )
            case Failure(error):
                status: Status = "failed" if error.retryable else "rejected"
                return Outcome(key, status, attempts, tuple(log), error.message, position=position)
        return Outcome(key, "rejected", attempts, tuple(log), "no result", position=position)


async def deliver(
    items: Iterable[Incoming],
    cfg: Config,
    options: DeliveryOptions = DeliveryOptions(),
    on_outcome: Callable[[Incoming, Outcome], None] = lambda _i, _o: None,
    transport: httpx.AsyncBaseTransport | None = None,
    control: Control | None = None,
    app: AppState | None = None,
    wire: Wire | None = None,
) -> Summary:
    """Deliver every event; `on_outcome` hears of each as it finishes (any order across users).

    `transport` replaces real HTTPS (tests pass `httpx.MockTransport`); `wire` is connections
    the caller keeps across runs (the service's, per app), used instead of both. `control`
    lets the caller stop the run (a signal). A run-level fault stops it too: `Summary.fault`
    says why.
    """
    width = max(1, options.concurrency)
    owned = wire is None
    if wire is None:
        wire = Wire.of(cfg, options.base_url, width, transport)
    run = _Run(cfg, options, control or Control(), app or AppState.new(options), wire)
    started = time.monotonic()
    lanes: dict[str, deque[Incoming]] = {}
    running: set[asyncio.Task[None]] = set()
    room = asyncio.Semaphore(options.buffer or 16 * width)

    broken: list[BaseException] = []

    async def run_lane(lane: str) -> None:
        queue = lanes[lane]
        while queue:
            incoming = queue[0]
            outcome = await run.deliver_one(incoming)
            queue.popleft()
            run.summary.add(outcome)
            try:
                on_outcome(incoming, outcome)
            except Exception as error:  # noqa: BLE001 - raised below, once every lane has ended
                # A lane that died here would never free its room: the reader would wait
                # for it forever. Stop the run instead, and let the caller hear why.
                broken.append(error)
                run.control.stop("an outcome could not be filed")
            finally:
                room.release()
        del lanes[lane]

    grace = asyncio.create_task(run.leave_after_grace())
    try:
        if options.probe:
            fault = await run.unless_stopped(wire.probe())
            if fault is not None:
                run.summary.fault = fault
                return run.summary
        for incoming in items:
            if run.control.reason is not None:
                # Read (and stored) just as the run stopped: it has an outcome too.
                outcome = Outcome(incoming.key, "pending", position=incoming.position)
                run.summary.add(outcome)
                on_outcome(incoming, outcome)
                break
            await room.acquire()
            if incoming.lane in lanes:
                lanes[incoming.lane].append(incoming)
                continue
            lanes[incoming.lane] = deque([incoming])
            task = asyncio.create_task(run_lane(incoming.lane))
            running.add(task)
            task.add_done_callback(running.discard)
        while running:
            await asyncio.gather(*list(running))
    finally:
        grace.cancel()
        await run.outage.abandon(run.prober)
        if owned:
            await wire.aclose()
    if broken:
        raise broken[0]
    run.summary.seconds = time.monotonic() - started
    return run.summary
