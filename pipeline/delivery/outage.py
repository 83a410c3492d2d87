"""Riding out an outage (DELIVERY §3): every lane waits while the start probe's read asks
User.com whether it is there, so one poison event or one endpoint that is down never looks
like an outage, and a real outage costs no event an attempt.

One `Outage` per app (in `AppState`): the service's rounds share it, so one pause and one
probe serve them all. The decision itself is `OutageWatch`'s (pure, clock injected); this
module only coordinates the lanes around the one probe in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from pipeline.core.answers import Answer
from pipeline.delivery.faults import outage_fault, probe_verdict
from pipeline.delivery.pacing import OutageWatch
from pipeline.runner import Target


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a request that failed (or waited) does next.

    count: the failure is its event's own (an attempt spent); resend: an outage has ended,
    the request goes again at no cost; fault: stop the run (`fault` says why); stopped: the
    run is stopping, the event stays pending.
    """

    kind: Literal["count", "resend", "fault", "stopped"]
    fault: str = ""


COUNT = Verdict("count")
RESEND = Verdict("resend")
STOPPED = Verdict("stopped")


@dataclass(frozen=True, slots=True)
class Prober:
    """How one run probes: its request, where it goes, its stop signal and its limit."""

    ask: Callable[[], Awaitable[Answer]]
    target: Target
    stopping: asyncio.Event
    max_outage: float


async def stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less when the run is told to stop; True when it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


def _unheard(_reason: str | None) -> None:
    return None


@dataclass(slots=True)
class Outage:
    watch: OutageWatch = field(default_factory=OutageWatch)
    episode: asyncio.Task[Verdict] | None = None
    started_by: Prober | None = None
    # Told once when a probe first fails (why), and once (None) when a later probe is answered:
    # the lanes are silent while they wait, and the service logs both.
    heard: Callable[[str | None], None] = _unheard

    def answered(self) -> None:
        """A request got an answer that is not a failure of User.com."""
        self.watch.answer(False)

    async def after_failure(self, prober: Prober) -> Verdict:
        """A request failed (5xx, timeout, lost connection): its event's own failure, unless
        it starts or meets a pause; then what the pause's probes found."""
        if self.watch.answer(True) and self.episode is None:
            self.started_by = prober
            self.episode = asyncio.create_task(self._ride_out(prober))
        if self.episode is None:
            return COUNT
        return await self._join(self.episode, prober.stopping)

    async def clear(self, stopping: asyncio.Event) -> Verdict:
        """Before any request: wait out a pause in progress (COUNT when there is none)."""
        if self.episode is None:
            return COUNT
        return await self._join(self.episode, stopping)

    async def abandon(self, prober: Prober) -> None:
        """The run that started the pause ends (it was stopped): its probe ends with it."""
        episode = self.episode
        if episode is None or self.started_by is not prober or episode.done():
            return
        episode.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await episode

    @staticmethod
    async def _join(episode: asyncio.Task[Verdict], stopping: asyncio.Event) -> Verdict:
        if stopping.is_set():
            return STOPPED
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait((episode, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not episode.done() or episode.cancelled():
            return STOPPED
        return episode.result()

    async def _ride_out(self, prober: Prober) -> Verdict:
        """Probe until User.com answers, the outage outlasts --max-outage, or the run stops."""
        watch = self.watch
        try:
            while True:
                watch.probing()
                verdict, why = probe_verdict(await prober.ask(), prober.target)
                if verdict == "answered":
                    was_outage = watch.probe_answered()
                    if was_outage:
                        self.heard(None)
                    return RESEND if was_outage else COUNT
                if verdict == "fault":
                    return Verdict("fault", why)
                if watch.since is None:
                    self.heard(why)
                wait = watch.probe_failed(why, prober.max_outage)
                if wait is None:
                    return Verdict("fault", outage_fault(watch.outage_seconds()))
                if await stopped_within(prober.stopping, wait):
                    return STOPPED
        finally:
            # Ended without an answer too (stopped, a fault): a later failure pauses afresh.
            watch.end()
            self.episode = None
            self.started_by = None
