"""The one way delivery talks to User.com (DELIVERY §1-§3): `Wire` sends one core `Request`
and gets its `Answer`.

It owns what every sender shares: connection slots (at most `width` requests on the wire at
once), the timeouts, TLS verified against certifi's roots, the key blanked in every answer,
the request log (each request as an `Exchange` with the real URL, never the sandbox's) and
run-fault detection (`faults.run_fault`, which reads `meaning`). The engine (`usercom send`),
the service (one Wire per app, for its life) and `Destination.adeliver` send through it, and
`probe_once` / `probe` are the one probe they start and pause with.

With `transport=` (any httpx transport: MockTransport, FakeUserCom) every request goes through
that transport, exactly as the library's seam has always worked.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import NamedTuple, Protocol, Self

import certifi
import httpx

from pipeline.core.answers import Answer, Unreachable
from pipeline.core.calls import Request, call
from pipeline.core.config import Config
from pipeline.delivery.faults import PROBE_SUBJECT, probe_fault, run_fault
from pipeline.delivery.outcome import PROBE, Exchange
from pipeline.runner import AsyncVia, Target, asend

# The start probe tries a lost connection or a timeout again, this long apart, so one dropped
# packet does not stop a run; a host that never answers does.
PROBE_PAUSES = (0.5, 1.0)


class Sent(NamedTuple):
    """A request's answer, the exchange to log, and the run-level fault it shows, if any."""

    answer: Answer
    exchange: Exchange
    fault: str | None


class Link(Protocol):
    """What carries one request to the target and brings its answer back."""

    async def answer(self, target: Target, request: Request) -> Answer: ...

    async def aclose(self) -> None: ...


class Through:
    """A caller's own httpx transport (MockTransport, FakeUserCom, a custom one) or client:
    every request goes through it as it is; the caller closes it."""

    def __init__(self, transport: AsyncVia) -> None:
        self.transport = transport

    async def answer(self, target: Target, request: Request) -> Answer:
        return await asend(self.transport, target, request)

    async def aclose(self) -> None:
        return None


class HttpxPools:
    """httpx on the network: each request on the least busy of `width` small pools.

    httpcore looks at every connection of its pool (and polls each idle one) on every request,
    so one pool of 64 connections costs more CPU than the requests themselves; many pools of 2
    cost far less. They share one TLS context (about 20 ms to build)."""

    def __init__(self, width: int, tls: ssl.SSLContext) -> None:
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        self.pools = [httpx.AsyncHTTPTransport(verify=tls, limits=limits) for _ in range(width)]
        self.busy = [0] * width
        self.next = 0

    def _choose(self) -> int:
        hint = self.next % len(self.pools)
        self.next += 1
        if self.busy[hint] == 0:
            return hint
        return min(range(len(self.pools)), key=self.busy.__getitem__)

    async def answer(self, target: Target, request: Request) -> Answer:
        chosen = self._choose()
        self.busy[chosen] += 1
        try:
            return await asend(self.pools[chosen], target, request)
        finally:
            self.busy[chosen] -= 1

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()


def verified_tls() -> ssl.SSLContext:
    """TLS verified against certifi's roots, as httpx does by default."""
    return ssl.create_default_context(cafile=certifi.where())


def network_link(width: int) -> Link:
    """The link used when no transport is given."""
    return HttpxPools(width, verified_tls())


def _go() -> None:
    return None


class Wire:
    """One app's connections to User.com, shared by every sender of that app."""

    def __init__(self, target: Target, logged_base: str, width: int, link: Link) -> None:
        self.target = target
        self.logged_base = logged_base
        self.width = max(1, width)
        self.link = link
        self.room = asyncio.Semaphore(self.width)
        self.on_the_wire = 0  # requests sent and not yet answered

    @classmethod
    def of(
        cls,
        cfg: Config,
        origin: str | None,
        width: int,
        transport: AsyncVia | None = None,
    ) -> Wire:
        """The config's app at `origin` (the sandbox) or its own; through `transport` if given."""
        width = max(1, width)
        link: Link = network_link(width) if transport is None else Through(transport)
        return cls(Target.of(cfg, origin), cfg.base_url, width, link)

    async def send(self, request: Request, *, ready: Callable[[], None] = _go) -> Sent:
        """Send `request` on a free slot. `ready` runs once the slot is held, just before the
        request goes out: it may raise to keep the request from starting (a stop that came
        while the sender waited for a slot)."""
        async with self.room:
            ready()
            answer = await self._carry(request)
        exchange = Exchange.of(request, answer, self.logged_base)
        return Sent(answer, exchange, run_fault(request, answer, self.target))

    async def _carry(self, request: Request) -> Answer:
        self.on_the_wire += 1
        try:
            return await self.link.answer(self.target, request)
        finally:
            self.on_the_wire -= 1

    async def probe_once(self) -> Sent:
        """`usercom check`'s authenticated read, once, counted as the probe."""
        request = call("user_by_id", PROBE_SUBJECT)
        async with self.room:
            answer = await self._carry(request)
        exchange = Exchange.of(request, answer, self.logged_base, PROBE)
        return Sent(answer, exchange, run_fault(request, answer, self.target))

    async def probe(self) -> str | None:
        """The start probe: the fault it shows, or None. A lost connection or a timeout is
        tried again (three tries in all), a host that never answers is a fault."""
        answer = (await self.probe_once()).answer
        for pause in PROBE_PAUSES:
            if not isinstance(answer, Unreachable):
                break
            await asyncio.sleep(pause)
            answer = (await self.probe_once()).answer
        return probe_fault(answer, self.target)

    async def aclose(self) -> None:
        await self.link.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()


async def check_app(cfg: Config, origin: str | None = None) -> str | None:
    """`usercom check`: the start probe over a fresh connection; the fault it shows, or None."""
    async with Wire.of(cfg, origin, 1) as wire:
        return await wire.probe()
