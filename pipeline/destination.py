"""`Destination`: one parsed config and one connection pool, for frameworks and notebooks.

>>> import httpx
>>> fake = httpx.MockTransport(lambda request: httpx.Response(404, json={"detail": "Not found."}))
>>> with Destination({"apiKey": "k" * 64, "appSubdomain": "acme"}, transport=fake) as dest:
...     dest.process({"type": "identify", "userId": "u1"})["output"]["endpoint"]
'https://acme.user.com/api/public/users/'
>>> Destination({"apiKey": "k" * 64, "appSubdomain": "a.b"})
Traceback (most recent call last):
...
pipeline.destination.ConfigError: App Subdomain 'a.b' is not a valid User.com subdomain: \
use the single name before .user.com (letters, digits, hyphens)

Thread safety: `process`, `plan` and `deliver` may be called from many threads at once (a
`concurrent.futures` pool, a Spark or Ray worker's threads): the config is frozen, the shared
httpx client is thread-safe, `deliver` hands each event to one loop thread's connections,
and each call keeps its own state. `aprocess` / `adeliver` use
one `AsyncClient`, built on first use: call them from one event loop.
"""

from __future__ import annotations

import html
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Self

import httpx
from returns.result import Failure, Result, Success

from pipeline.compat import processor_item
from pipeline.core.answers import Answer, Unreachable, answer_error, meaning
from pipeline.core.calls import ORIGIN_MAX, Request
from pipeline.core.compose import Job, prepare_message
from pipeline.core.config import Config, mask, parse_config
from pipeline.core.errors import PipelineError
from pipeline.core.flows import DELIVERY, REFERENCE
from pipeline.core.plan import Plan, plan_of
from pipeline.core.steps import Final
from pipeline.delivery.faults import RESUME, RunFault, run_fault
from pipeline.delivery.incoming import Incoming, canonical, incoming
from pipeline.delivery.outcome import Exchange, Outcome, Status
from pipeline.delivery.wire import LoopThread, Wire
from pipeline.runner import (
    AsyncVia,
    Delivered,
    Finished,
    Target,
    Via,
    adrive,
    drive,
    scrub,
    send,
)
from pipeline.shared_client import LIMITS, TIMEOUT

Message = Mapping[str, Any]


class ConfigError(ValueError):
    """The destination config cannot be used; `error` is the SPEC §10 configuration error."""

    def __init__(self, error: PipelineError) -> None:
        super().__init__(error.message)
        self.error = error


def _parse(config: Mapping[str, Any]) -> Config:
    match parse_config(config):
        case Success(Config() as cfg):
            return cfg
        case Failure(PipelineError() as error):
            raise ConfigError(error)
    raise ConfigError(parse_config(None).failure())


LIBRARY_RESUME = "nothing was delivered: deliver the event again when fixed"


def _in_library_words(fault: str) -> str:
    """A run fault as a library caller can act on it: they have no ledger and no options."""
    return fault.replace(RESUME, LIBRARY_RESUME).replace("--base-url", "base_url")


def _unreachable_fault(answer: Answer, target: Target) -> str | None:
    if isinstance(answer, Unreachable) and meaning(answer) == "unreachable":
        origin = target.origin
        return (
            f"User.com could not be reached at {origin} ({answer.reason}: {answer.detail}): "
            f"check base_url, appSubdomain and the network; {LIBRARY_RESUME}"
        )
    return None


class Destination:
    """A User.com destination: `process` / `aprocess` (SPEC §11 responses), `plan` (pure),
    `deliver` / `adeliver` (send the final request too: a delivery Outcome)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        base_url: str | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        client: httpx.Client | httpx.AsyncClient | None = None,
    ) -> None:
        self.config = _parse(config)
        if base_url is not None and len(base_url) > ORIGIN_MAX:
            raise ValueError(
                f"base_url is {len(base_url)} characters, over the {ORIGIN_MAX} an origin may "
                "have (like http://127.0.0.1:8000): identifiers take the rest of a URL"
            )
        self._target = Target.of(self.config, base_url)
        self._transport = transport
        self._client = client
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None  # ours, built on first use
        self._wire: Wire | None = None
        self._looping: tuple[LoopThread, Wire] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # --- where requests go ----------------------------------------------------------------

    def _via(self) -> Via:
        if isinstance(self._client, httpx.Client):
            return self._client
        if isinstance(self._transport, httpx.BaseTransport):
            return self._transport
        with self._lock:
            if self._sync is None:
                self._sync = httpx.Client(timeout=TIMEOUT, limits=LIMITS)
            return self._sync

    def _blocking(self) -> tuple[LoopThread, Wire]:
        """Our own connections for sync `deliver` calls: a Wire in a loop thread, made once."""
        with self._lock:
            if self._looping is None:
                width = LIMITS.max_connections or 1
                wire = Wire.of(self.config, self._target.origin, width)
                self._looping = (LoopThread(), wire)
                # Closed with the Destination, or at exit if it never is.
                self._finalizer = weakref.finalize(self, LoopThread.close, *self._looping)
            return self._looping

    def _awire(self) -> Wire:
        """The async side's connections: the caller's client or transport, else our own."""
        with self._lock:
            if self._wire is None:
                via: AsyncVia | None = None
                if isinstance(self._client, httpx.AsyncClient):
                    via = self._client
                elif isinstance(self._transport, httpx.AsyncBaseTransport):
                    via = self._transport
                width = LIMITS.max_connections or 1
                self._wire = Wire.of(self.config, self._target.origin, width, via)
            return self._wire

    # --- the pure part ----------------------------------------------------------------------

    def _job(self, message: Message, *, delivery: bool = False) -> Result[Job, PipelineError]:
        return prepare_message(self.config, message, DELIVERY if delivery else REFERENCE)

    def plan(self, message: Message) -> Plan | PipelineError:
        """What the message will do, with no network at all."""
        return plan_of(self._job(message))

    # --- the drop-in response ---------------------------------------------------------------

    def _finish(self, finished: Finished) -> Result[tuple[Config, Any], PipelineError]:
        return finished.map(lambda final: (self.config, final)).alt(
            lambda error: scrub(error, self._target)
        )

    def process(self, message: Message) -> dict[str, Any]:
        """The SPEC §11 processor response for one message: lookups done, final request out."""
        via = self._via()
        finished = self._job(message).bind(
            lambda job: drive(Success(job.step), lambda r: send(via, self._target, r))
        )
        return processor_item({}, self._finish(finished))

    async def aprocess(self, message: Message) -> dict[str, Any]:
        wire = self._awire()

        async def ask(request: Request) -> Answer:
            return (await wire.send(request)).answer

        match self._job(message):
            case Success(Job() as job):
                finished = await adrive(Success(job.step), ask)
            case Failure(error):
                finished = Failure(error)
        return processor_item({}, self._finish(finished))

    # --- delivery -------------------------------------------------------------------------

    def _checked(self, request: Request, answer: Answer, log: list[Exchange]) -> Answer:
        """The library's policy for every request: logged; a run fault (the key refused, a
        wrong URL, a host that cannot be reached at all) raises `RunFault`. A timeout or a
        lost connection is this event's retryable trouble (DELIVERY §2): it ends `failed`."""
        log.append(Exchange.of(request, answer, self.config.base_url))
        fault = run_fault(request, answer, self._target)
        if fault is not None:
            raise RunFault(_in_library_words(fault))
        unreachable = _unreachable_fault(answer, self._target)
        if unreachable is not None:
            raise RunFault(unreachable)
        return answer

    def _failed(
        self, key: str, error: PipelineError, log: list[Exchange], warnings: tuple[str, ...] = ()
    ) -> Outcome:
        error = scrub(error, self._target)
        status: Status = "failed" if error.retryable else "rejected"
        return Outcome(key, status, 1, tuple(log), error.message, warnings)

    def _ended(self, key: str, delivered: Delivered, log: list[Exchange]) -> Outcome:
        if isinstance(delivered, Failure):
            return self._failed(key, delivered.failure(), log)
        final, answer = delivered.unwrap()
        if meaning(answer) == "ok":
            return Outcome(key, "delivered", 1, tuple(log), None, final.warnings)
        error = answer_error(answer, "delivering the event")
        return self._failed(key, error, log, final.warnings)

    def deliver(self, message: Message) -> Outcome:
        """Deliver one message (one attempt, with delivery's fewer calls): its Outcome.

        A fault of the run, not of this message (the key refused, no host to connect to, a
        wrong URL), raises `RunFault` instead: no outcome would describe this event truthfully.
        """
        event = incoming(self.config, 0, canonical(message))
        if not isinstance(event.job, Success):
            return self._not_sent(message, event)
        if self._client is None and not isinstance(self._transport, httpx.BaseTransport):
            # The network path: the async wire (aiohttp), in a loop thread of our own.
            looping, wire = self._blocking()
            return looping.run(self._deliver_on(wire, event.key, event.job.unwrap()))
        via = self._via()
        log: list[Exchange] = []

        def ask(request: Request) -> Answer:
            return self._checked(request, send(via, self._target, request), log)

        delivered = drive(Success(event.job.unwrap().step), ask, lambda final: ask(final.request))
        return self._ended(event.key, delivered, log)

    async def adeliver(self, message: Message) -> Outcome:
        event = incoming(self.config, 0, canonical(message))
        if not isinstance(event.job, Success):
            return self._not_sent(message, event)
        return await self._deliver_on(self._awire(), event.key, event.job.unwrap())

    async def _deliver_on(self, wire: Wire, key: str, job: Job) -> Outcome:
        """One attempt of the event `key` (its job ready) through `wire`."""
        log: list[Exchange] = []

        async def ask(request: Request) -> Answer:
            return self._checked(request, (await wire.send(request)).answer, log)

        async def ask_final(final: Final) -> Answer:
            return await ask(final.request)

        delivered = await adrive(Success(job.step), ask, ask_final)
        return self._ended(key, delivered, log)

    def _not_sent(self, message: Message, event: Incoming) -> Outcome:
        """An event that can never be sent as it is: invalid, or not an event at all."""
        match event.job:
            case Failure(PipelineError() as error):
                return Outcome(event.key, "rejected", 0, (), error.message)
        # In plan's words (SPEC §3), so plan() and deliver() refuse a non-object alike.
        match self._job(message):
            case Failure(PipelineError() as error):
                return Outcome(event.key, "rejected", 0, (), error.message)
        return Outcome(event.key, "rejected", 0, (), event.problem)

    # --- lifetime and looks -----------------------------------------------------------------

    def close(self) -> None:
        """Close the clients this Destination built (never one the caller passed)."""
        with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None
            if self._finalizer is not None:
                self._finalizer()  # closes the loop thread's wire, once
                self._finalizer = self._looping = None

    async def aclose(self) -> None:
        self.close()
        if self._wire is not None:
            await self._wire.aclose()
            self._wire = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        sent_to = self._target.base_url
        return (
            f"Destination(subdomain={self.config.subdomain!r}, "
            f"api_key={mask(self.config.api_key)!r}, sends_to={sent_to!r})"
        )

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"
