"""How fast to send, found as we go (DELIVERY §3, §5): one Pacer per User.com app.

User.com publishes no rate limit, so the pacer finds it:

- *Slow start*: from `initial` (50) requests/s, the rate grows by two requests/s for every good
  answer (about sevenfold each second, as answers come faster) until the first 429.
- *On 429*: every lane waits out the Retry-After together, and the rate drops to what was
  actually accepted over the last two seconds (a token bucket accepts exactly its rate when
  it is overrun), a little under it. At most one cut per Retry-After.
- *Then*: additive increase, about `probe_step` requests/s per second of good answers.
- `cap` (`--rate`) is a hard ceiling. Every request counts: lookups and company calls too.

`OutageWatch` tells an outage from one bad event (DELIVERY §3): when half or more of the last
20 answers were 5xx, timeouts or lost connections, every lane pauses and the start probe's
authenticated read is made, never the failing request again. Probe answered: no outage, the
failures count against their own events. Probe failed: an outage, probed again after a shared
backoff (from 0.5 s, x1.5, capped at 60 s) until one is answered or --max-outage has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

WINDOW = 20  # answers kept to tell an outage from bad luck
OUTAGE_SHARE = 0.5
MEASURE_S = 2.0  # how far back accepted requests are counted after a 429
# Waits longer than this watch for a stop (a signal); shorter ones, the pace between requests,
# are plain sleeps, which cost far less.
LONG_WAIT_S = 0.25


@dataclass(slots=True)
class Pacer:
    cap: float | None = None  # --rate: a hard ceiling, requests/s
    initial: float = 50.0
    floor: float = 0.5
    probe_step: float = 1.0  # requests/s added per second of good answers, after slow start
    cut_to: float = 0.95  # share of the measured accepted rate kept after a 429
    clock: Callable[[], float] = time.monotonic
    # Injected with the clock, so that a test drives both and no test waits a real second.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rate: float = 0.0
    slow_start: bool = True
    next_at: float = 0.0
    resume_at: float = 0.0  # every lane waits until then (Retry-After, outage)
    last_cut: float = -1e9
    accepted: deque[float] = field(default_factory=deque)
    throttled: int = 0  # 429s seen
    gate: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.rate = self._limit(self.initial)

    def _limit(self, rate: float) -> float:
        rate = max(self.floor, rate)
        return min(rate, self.cap) if self.cap is not None else rate

    async def acquire(self, stopping: asyncio.Event | None = None) -> bool:
        """Wait for this request's turn: paced at the current rate, after any shared pause.
        False when `stopping` is set during a long wait (a Retry-After): no turn is taken.

        Waiters queue on a lock (first come, first served) and only the first one sleeps,
        so a change of rate or a new pause applies at once, not to turns booked earlier.
        """
        async with self.gate:
            while True:
                now = self.clock()
                turn = max(self.next_at, self.resume_at)
                if turn <= now:
                    break
                if stopping is None or turn - now < LONG_WAIT_S:
                    await self.sleep(turn - now)
                    continue
                if await self._stopped_while_waiting(stopping, turn - now):
                    return False
            self.next_at = max(now, self.next_at) + 1.0 / self.rate
        return True

    async def _stopped_while_waiting(self, stopping: asyncio.Event, seconds: float) -> bool:
        """Sleep `seconds` unless `stopping` is set first; True when it was."""
        if stopping.is_set():
            return True
        napping = asyncio.ensure_future(self.sleep(seconds))
        watching = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait((napping, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (napping, watching):
                task.cancel()
            await asyncio.wait((napping, watching))
        return stopping.is_set()

    def good(self) -> None:
        """An answer that is neither a 429 nor a failure of User.com."""
        now = self.clock()
        self.accepted.append(now)
        while self.accepted and self.accepted[0] < now - MEASURE_S:
            self.accepted.popleft()
        step = 2.0 if self.slow_start else self.probe_step / self.rate
        self.rate = self._limit(self.rate + step)

    def too_many(self, retry_after: float | None) -> None:
        """A 429: everybody waits out Retry-After; the rate drops to what was accepted."""
        now = self.clock()
        self.throttled += 1
        self.resume_at = max(self.resume_at, now + (retry_after or 1.0))
        if now - self.last_cut < max(retry_after or 1.0, 1.0):
            return
        self.last_cut = now
        self.slow_start = False
        measured = sum(1 for t in self.accepted if t >= now - MEASURE_S) / MEASURE_S
        self.rate = self._limit(min(self.rate * 0.9, measured * self.cut_to) or self.floor)


@dataclass(frozen=True, slots=True)
class Pause:
    """What the lanes are waiting for, as the progress shows it."""

    reason: str  # why the last probe failed, or "probing" while the first is out
    next_probe_in: float | None  # seconds; None while a probe is out
    outage_for: float  # seconds since the first failed probe


@dataclass(slots=True)
class OutageWatch:
    """The pause/probe decision (DELIVERY §3), kept free of I/O: answers go in, a verdict out.

    `answer` feeds the window; True means "pause every lane and probe". Then `probe_failed`
    (how long to wait before the next probe) or `probe_answered` (whether it had been an
    outage: requests that waited may be sent again at no cost to their events).
    """

    clock: Callable[[], float] = time.monotonic
    backoff_first: float = 0.5
    backoff_factor: float = 1.5
    backoff_max: float = 60.0
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    paused: bool = False
    since: float | None = None  # first failed probe of this outage
    backoff: float = 0.0
    next_probe_at: float | None = None
    reason: str = "probing"

    def __post_init__(self) -> None:
        self.backoff = self.backoff_first

    def answer(self, failed: bool) -> bool:
        """One answer (failed: a 5xx, timeout or lost connection). True when it starts a pause."""
        self.recent.append(failed)
        if self.paused or not failed:
            return False
        bad = sum(self.recent)
        if len(self.recent) < WINDOW // 2 or bad < OUTAGE_SHARE * WINDOW:
            return False
        self.paused = True
        self.reason = "probing"
        self.next_probe_at = None
        return True

    def probe_failed(self, reason: str, max_outage: float) -> float | None:
        """The probe got no User.com answer: seconds until the next one, None past max_outage."""
        now = self.clock()
        if self.since is None:
            self.since = now
        self.reason = reason
        left = max_outage - (now - self.since)
        if left <= 0:
            return None
        wait = min(self.backoff, left)
        self.backoff = min(self.backoff * self.backoff_factor, self.backoff_max)
        self.next_probe_at = now + wait
        return wait

    def probing(self) -> None:
        self.next_probe_at = None

    def probe_answered(self) -> bool:
        """User.com answered the probe: the pause ends, the window starts afresh. True when it
        had been an outage (a probe had failed), so what waited is no event's fault."""
        was_outage = self.since is not None
        self.recent.clear()
        self.end()
        return was_outage

    def end(self) -> None:
        """The pause is over (answered, or the run stopped): the next one starts afresh."""
        self.paused = False
        self.since = None
        self.backoff = self.backoff_first
        self.next_probe_at = None
        self.reason = "probing"

    def outage_seconds(self) -> float:
        return 0.0 if self.since is None else self.clock() - self.since

    def pause(self) -> Pause | None:
        """What the progress says while paused; None while delivery runs."""
        if not self.paused:
            return None
        now = self.clock()
        next_in = None if self.next_probe_at is None else max(0.0, self.next_probe_at - now)
        return Pause(self.reason, next_in, self.outage_seconds())
