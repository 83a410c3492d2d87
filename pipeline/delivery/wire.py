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
import functools
import json
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self, TypeVar

import aiohttp
import certifi
import yarl
from httpx._urlparse import MAX_URL_LENGTH

from pipeline.core.answers import Answer, Unreachable
from pipeline.core.calls import Request, call, headers
from pipeline.core.config import Config
from pipeline.core.types import thaw
from pipeline.delivery.faults import PROBE_SUBJECT, probe_fault, run_fault
from pipeline.delivery.outcome import PROBE, Exchange
from pipeline.runner import AsyncVia, Target, asend, reply_of, retry_after_of, to_httpx

# The start probe tries a lost connection or a timeout again, this long apart, so one dropped
# packet does not stop a run; a host that never answers does.
PROBE_PAUSES = (0.5, 1.0)
# User.com's answers are a user, an event or a list page: a few KB. One that runs past this is
# not an answer of User.com's but a broken or hostile origin, and is not held in memory.
MAX_ANSWER_BYTES = 8 << 20


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


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to connect, and to wait for each read of an answer (httpx's 10 s and 30 s).
    A whole request gets at most `total`: an origin that trickles its answer in a byte at a
    time never lets one read wait long, and would otherwise hold its slot for ever."""

    connect: float = 10.0
    read: float = 30.0

    @property
    def total(self) -> float:
        return self.connect + 2 * self.read


class AnswerTooLarge(Exception):
    """An answer body past MAX_ANSWER_BYTES."""


# What went wrong, in httpx's words: `meaning` and the operator's messages read these names
# (ConnectError and ConnectTimeout: no connection was ever made), whichever client carried it.
def _failure(error: BaseException) -> Unreachable:
    match error:
        case aiohttp.ConnectionTimeoutError():
            return Unreachable("timeout", "ConnectTimeout")
        case aiohttp.SocketTimeoutError() | TimeoutError():
            return Unreachable("timeout", "ReadTimeout")
        case aiohttp.ClientConnectorError():  # refused, no route, DNS, TLS verification
            return Unreachable("connection", "ConnectError")
        case aiohttp.ClientOSError():
            return Unreachable("connection", "ReadError")
        case AnswerTooLarge():
            return Unreachable("connection", f"RemoteProtocolError: {error}")
        case _:  # disconnected without an answer, a broken answer
            return Unreachable("connection", "RemoteProtocolError")


_CLIENT_ERRORS = (aiohttp.ClientError, TimeoutError, AnswerTooLarge)


async def _bounded(response: aiohttp.ClientResponse) -> bytes:
    """The answer's body, at most MAX_ANSWER_BYTES of it (AnswerTooLarge past that)."""
    declared = response.content_length
    if declared is not None and declared <= MAX_ANSWER_BYTES:
        return await response.read()  # the parser stops at the declared length
    body = bytearray()
    while chunk := await response.content.readany():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise AnswerTooLarge(f"an answer over {MAX_ANSWER_BYTES >> 20} MB")
    return bytes(body)


class AiohttpLink:
    """aiohttp on the network: one connection pool of `width` (its connector is O(1) per
    request, unlike httpcore's scan), HTTP/1.1 keep-alive, TLS verified against certifi's
    roots, no redirects followed (a redirect is a run fault), no cookies kept, no proxy
    from the environment: what httpx's bare transports did, at a sixth of the CPU
    (benchmarks/wire.py). The session is made on first use, in the loop that uses it."""

    def __init__(
        self,
        width: int,
        tls: ssl.SSLContext | None = None,  # None: `verified_tls()`, for https origins only
        timeouts: Timeouts = Timeouts(),
        *,
        counting: bool = False,
    ) -> None:
        self.width = width
        self.tls = tls
        self.timeout = aiohttp.ClientTimeout(
            total=timeouts.total, connect=timeouts.connect, sock_read=timeouts.read
        )
        self.session: aiohttp.ClientSession | None = None
        # Connections made, when `counting` (the benchmark, the tests): aiohttp's trace hooks
        # cost about 6% of each request's CPU, so delivery runs without them.
        self.counting = counting
        self.opened = 0
        self._headers: dict[str, dict[str, str]] = {}

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            tracing = aiohttp.TraceConfig()
            tracing.on_connection_create_end.append(self._counted)
            connector = aiohttp.TCPConnector(limit=self.width, limit_per_host=0)
            self.session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                trace_configs=[tracing] if self.counting else None,
            )
        return self.session

    def _tls_for(self, url: str) -> ssl.SSLContext | bool:
        """The verified context for https; plain http needs none (building one costs tens of
        ms per app at start: certifi's roots are read and parsed)."""
        if not url.startswith("https:"):
            return True  # aiohttp's default, unused without TLS
        if self.tls is None:
            self.tls = verified_tls()
        return self.tls

    async def _counted(self, *_: object) -> None:
        self.opened += 1

    def _headers_of(self, target: Target) -> dict[str, str]:
        found = self._headers.get(target.api_key)
        if found is None:
            found = self._headers[target.api_key] = headers(target.api_key)
        return found

    async def answer(self, target: Target, request: Request) -> Answer:
        path, query = request.encoded()
        url = f"{target.base_url}{path}" if query is None else f"{target.base_url}{path}?{query}"
        if len(url) > MAX_URL_LENGTH:
            to_httpx(target, request)  # refused as too long, in httpx's words, as it always was
        body = None if request.body is None else json.dumps(thaw(request.body)).encode()
        try:
            async with self._session().request(
                request.method,
                yarl.URL(url, encoded=True),  # encoded once, by the core: never again
                data=body,
                headers=self._headers_of(target),
                allow_redirects=False,
                ssl=self._tls_for(url),
            ) as response:
                content = await _bounded(response)
                said = response.headers.getall("Retry-After", [])
                status = response.status
        except _CLIENT_ERRORS as error:
            return _failure(error)
        return reply_of(status, content, retry_after_of(said), target.secret)

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


@functools.cache
def verified_tls() -> ssl.SSLContext:
    """TLS verified against certifi's roots, as httpx does by default: made once, on first
    use, and shared by every app's link (it is only read once made)."""
    return ssl.create_default_context(cafile=certifi.where())


def network_link(width: int) -> Link:
    """The link used when no transport is given: aiohttp (benchmarks/wire.py says why)."""
    return AiohttpLink(width)


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

    async def send(
        self, request: Request, *, ready: Callable[[], None] = _go, endpoint: str = ""
    ) -> Sent:
        """Send `request` on a free slot, logged under `endpoint` (its own name by default).
        `ready` runs once the slot is held, just before the request goes out: it may raise to
        keep the request from starting (a stop that came while the sender waited for a slot).
        """
        # One coroutine from the slot to the link: each await layer is paid on every resume.
        async with self.room:
            ready()
            self.on_the_wire += 1
            try:
                answer = await self.link.answer(self.target, request)
            finally:
                self.on_the_wire -= 1
        exchange = Exchange.of(request, answer, self.logged_base, endpoint)
        return Sent(answer, exchange, run_fault(request, answer, self.target))

    async def probe_once(self) -> Sent:
        """`usercom check`'s authenticated read, once, counted as the probe."""
        return await self.send(call("user_by_id", PROBE_SUBJECT), endpoint=PROBE)

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


T = TypeVar("T")


class LoopThread:
    """An event loop in a daemon thread of its own, so sync callers (`Destination.deliver`,
    from any number of threads) share one async `Wire`: each call is one hop into the loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="usercom-wire", daemon=True
        )
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def close(self, wire: Wire) -> None:
        """Close `wire` in the loop, then end the loop and its thread."""
        if not self.loop.is_closed():
            self.run(wire.aclose())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


async def check_app(cfg: Config, origin: str | None = None) -> str | None:
    """`usercom check`: the start probe over a fresh connection; the fault it shows, or None."""
    async with Wire.of(cfg, origin, 1) as wire:
        return await wire.probe()
