"""``FakeClock``: virtual monotonic time for code that takes a clock and a sleep (the pacer).

A test reads the time with ``clock()``, hands ``clock.sleep`` where a coroutine would sleep,
and moves time with ``await clock.advance(seconds)``: sleepers wake in time order, each at its
own instant, and the event loop runs what they unblocked before time moves on. Nothing waits
a real second, and what happens at which instant is exact, not a timing guess.

>>> import asyncio
>>> async def show() -> list[float]:
...     clock, woke = FakeClock(), []
...     async def nap(seconds: float) -> None:
...         await clock.sleep(seconds)
...         woke.append(clock())
...     naps = [asyncio.ensure_future(nap(s)) for s in (2.0, 0.5)]
...     await clock.advance(3.0)
...     await asyncio.gather(*naps)
...     return woke
>>> asyncio.run(show())
[0.5, 2.0]
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["FakeClock"]

# Enough turns of the loop for a woken coroutine to run to its next wait, including a lock
# handed on to the next waiter and the tasks of an asyncio.wait.
_SETTLE_TURNS = 20


class FakeClock:
    """Virtual seconds from `start`; only `advance` moves them."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until `advance` has moved the time `seconds` on (a turn of the loop for 0)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    @property
    def wakes(self) -> list[float]:
        """When the sleepers still waiting will wake, soonest first."""
        return sorted(at for at, _, woken in self._sleepers if not woken.done())

    async def advance(self, seconds: float) -> None:
        """Move the time on by `seconds`, waking every sleeper due on the way at its instant."""
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            at, _, woken = heapq.heappop(self._sleepers)
            if woken.done():  # its sleeper was cancelled
                continue
            self.now = max(self.now, at)
            woken.set_result(None)
            await settle()
        self.now = target
        await settle()


async def settle() -> None:
    """Let every coroutine that can run now run up to its next wait."""
    for _ in range(_SETTLE_TURNS):
        await asyncio.sleep(0)
