"""How fast to send, found as we go (DELIVERY §3, §5): one Pacer per User.com app.

User.com publishes no rate limit, so the pacer finds it:

- *Slow start*: from `initial` (50) requests/s, the rate grows by two requests/s for every good
  answer (it triples each second) until the first 429.
- *On 429*: every lane waits out the Retry-After together, and the rate drops to what was
  actually accepted over the last two seconds (a token bucket accepts exactly its rate when
  it is overrun), a little under it. At most one cut per Retry-After.
- *Then*: additive increase, about `probe_step` requests/s per second of good answers.
- `cap` (`--rate`) is a hard ceiling. Every request counts: lookups and company calls too.

It also watches for an outage: when half or more of the last 20 answers were 5xx, timeouts or
lost connections, every lane pauses together (exponential backoff from 0.5 s, capped at 60 s)
instead of each burning its own attempts. After each pause one request probes; another
failure pauses again, 1.5 times longer; the first answer that is not a failure ends it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW = 20  # answers kept to tell an outage from bad luck
OUTAGE_SHARE = 0.5
MEASURE_S = 2.0  # how far back accepted requests are counted after a 429


@dataclass(slots=True)
class Pacer:
    cap: float | None = None  # --rate: a hard ceiling, requests/s
    initial: float = 50.0
    floor: float = 0.5
    probe_step: float = 1.0  # requests/s added per second of good answers, after slow start
    cut_to: float = 0.95  # share of the measured accepted rate kept after a 429
    backoff_first: float = 0.5
    backoff_factor: float = 1.5
    backoff_max: float = 60.0
    clock: Callable[[], float] = time.monotonic
    rate: float = 0.0
    slow_start: bool = True
    next_at: float = 0.0
    resume_at: float = 0.0  # every lane waits until then (Retry-After, outage)
    last_cut: float = -1e9
    accepted: deque[float] = field(default_factory=deque)
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    outage_since: float | None = None
    backoff: float = 0.0
    throttled: int = 0  # 429s seen
    gate: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.rate = self._limit(self.initial)
        self.backoff = self.backoff_first

    def _limit(self, rate: float) -> float:
        rate = max(self.floor, rate)
        return min(rate, self.cap) if self.cap is not None else rate

    async def acquire(self) -> None:
        """Wait for this request's turn: paced at the current rate, after any shared pause.

        Waiters queue on a lock (first come, first served) and only the first one sleeps,
        so a change of rate or a new pause applies at once, not to turns booked earlier.
        """
        async with self.gate:
            while True:
                now = self.clock()
                turn = max(self.next_at, self.resume_at)
                if turn <= now:
                    break
                await asyncio.sleep(turn - now)
            self.next_at = max(now, self.next_at) + 1.0 / self.rate

    def good(self) -> None:
        """An answer that is neither a 429 nor a failure of User.com."""
        now = self.clock()
        self.accepted.append(now)
        while self.accepted and self.accepted[0] < now - MEASURE_S:
            self.accepted.popleft()
        self.recent.append(False)
        self.outage_since = None
        self.backoff = self.backoff_first
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

    def failed(self) -> bool:
        """A 5xx, timeout or lost connection. True when that makes it an outage: all pause."""
        now = self.clock()
        self.recent.append(True)
        bad = sum(self.recent)
        if len(self.recent) < WINDOW // 2 or bad < OUTAGE_SHARE * WINDOW:
            return False
        if self.outage_since is None:
            self.outage_since = now
        if now >= self.resume_at:
            self.resume_at = now + self.backoff
            self.backoff = min(self.backoff * self.backoff_factor, self.backoff_max)
        return True

    def outage_seconds(self) -> float:
        return 0.0 if self.outage_since is None else self.clock() - self.outage_since
