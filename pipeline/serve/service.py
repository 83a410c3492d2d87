"""`usercom serve` as an ASGI app (Starlette): ingest, the transformer API, health, metrics.

`Service.open(options)` opens every app's ledger (durable commits, the writer lock held) and
builds the app; its lifespan starts the ledger thread and one delivery loop per app, and on
shutdown (SIGTERM) stops them: no new attempt starts, in-flight deliveries end (bounded by
`drain_seconds`), their outcomes are filed, the ledgers are closed.

Routes (DELIVERY §6):

- `POST /v1/identify|track|page|screen|group|alias` (one event, its type from the path),
  `POST /v1/batch` (`{"batch": [...]}`), `POST /webhook` (one event or an array): HTTP Basic
  auth with the write key as the user name. 200 only once the events are committed.
- `POST /v0/destinations/user`, `POST /routerTransform`: the transformer API (no write key;
  `Authorization: Bearer T` when --transformer-token is set).
- `GET /health`, `GET /metrics`.
- `/console/...`: the web console (DELIVERY §8, `pipeline.console`), only with a console token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pipeline.console import Console
from pipeline.delivery.incoming import json_bytes
from pipeline.delivery.ledger import Ledger, LedgerError
from pipeline.delivery.lifecycle import UNFINISHED
from pipeline.delivery.pg import Leasing, PgLedger, open_reader_at, open_writer_at
from pipeline.delivery.queue import Admit, Arrival, DeliveryQueue
from pipeline.serve import transformer
from pipeline.serve.delivery import AppDelivery, ledger_reason
from pipeline.serve.ingest import (
    DRAIN_LIMIT,
    SINGLE_TYPES,
    Admission,
    Parsed,
    Refused,
    admission,
    events_of,
    json_content_type,
    no_foreign_page,
    parse_json,
    read_body,
    received_at,
    write_key,
)
from pipeline.serve.logs import emit
from pipeline.serve.metrics import CONTENT_TYPE_LATEST, Metrics
from pipeline.serve.options import ServeOptions
from pipeline.serve.store import Store, ledger_trouble

Handler = Callable[[Request], Awaitable[Response]]
DISK_CHECK_S = 1.0
RETENTION_EVERY_S = 3600.0
LEDGER_RETRY_AFTER_S = 10
QUEUE_RETRY_AFTER_S = 30
DISK_RETRY_AFTER_S = 60
ADMIT_IN_THREAD = 500  # events of one request worked out off the event loop above this


@dataclass(frozen=True, slots=True)
class Admitted:
    """What one ingest request changed in its app's ledger."""

    queued: int  # events that joined the queue
    duplicates: int
    rejected: list[tuple[Admission, int]]  # and the position each was filed at
    types: Counter[str]
    repeated: int = 0  # later versions of a queued event, rejected (among `rejected`)


def _admit(ledger: DeliveryQueue, admissions: Sequence[Admission], now: float) -> Admitted:
    """Store a request's events (on the ledger thread), all of them or none, by the queue's
    rules (`DeliveryQueue.admit`): a client's retry changes nothing, a later version of a
    queued event is rejected under its own key, an edited finished one is queued again."""
    arrivals = [Arrival(a.key, a.content_hash, a.line, a.rejected) for a in admissions]
    queued = duplicates = repeated = 0
    rejected: list[tuple[Admission, int]] = []
    types: Counter[str] = Counter()
    for event, done in zip(admissions, ledger.admit(arrivals, received=now), strict=True):
        if done.verdict is Admit.KNOWN:
            duplicates += 1
            continue
        types[event.type] += 1
        repeated += done.verdict is Admit.REPEATED
        queued += done.joined
        if done.rejected is not None:
            rejected.append((replace(event, key=done.key, rejected=done.rejected), done.position))
    return Admitted(queued, duplicates, rejected, types, repeated)


class _SafeJSON(JSONResponse):
    """JSON that always encodes: the transformer API echoes client values, which may hold a
    lone surrogate (written back as its escape, see `json_bytes`)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def _error(refused: Refused) -> JSONResponse:
    return JSONResponse(refused.body(), status_code=refused.status, headers=refused.headers)


async def _not_found(request: Request, _error: Exception) -> Response:
    message = f"no route {request.url.path}: see /health, /v1/batch, /webhook"
    return JSONResponse({"code": "not_found", "message": message}, status_code=404)


async def _not_allowed(request: Request, _error: Exception) -> Response:
    message = f"{request.method} is not allowed on {request.url.path}"
    return JSONResponse({"code": "method_not_allowed", "message": message}, status_code=405)


async def _drain(request: Request, seconds: float) -> None:
    """Read (and drop) what is left of a refused request's body, within bounds, so a client
    that sends all of it before reading gets the answer rather than a reset connection."""
    received = 0
    with contextlib.suppress(TimeoutError, ClientDisconnect, RuntimeError):
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                received += len(chunk)
                if received > DRAIN_LIMIT:
                    return


class Service:
    """The running service: its options, ledgers (behind their thread), apps, metrics."""

    def __init__(self, options: ServeOptions, ledgers: Mapping[str, DeliveryQueue]) -> None:
        self.options = options
        self.metrics = Metrics()
        self.store = Store(ledgers)
        self.stopping = asyncio.Event()
        self.apps: dict[str, AppDelivery] = {
            name: AppDelivery(cfg, options, self.store, ledgers[name], self.metrics, self.stopping)
            for name, cfg in options.sources.apps.items()
        }
        for name in self.apps:
            self.metrics.add_app(name)
        self.tasks: list[asyncio.Task[None]] = []
        self.via: httpx.AsyncBaseTransport | None = None
        self._disk_at = 0.0
        self._disk_free = True
        token = options.console_token
        self.console = None if token is None else Console(self, token)
        self.app = Starlette(
            routes=self._routes(),
            lifespan=self._lifespan,
            exception_handlers={404: _not_found, 405: _not_allowed},
        )

    def reader(self, app: str) -> Ledger:
        """A new reader of `app`'s ledger, for the console (no lock: works while we write)."""
        return open_reader_at(self.options.ledgers[app])

    @classmethod
    def open(cls, options: ServeOptions) -> Service:
        """Open every app's ledger for writing (durable); `LedgerError` (busy, foreign, another
        app's) closes what was opened and says why."""
        opened: dict[str, DeliveryQueue] = {}
        try:
            for name, path in options.ledgers.items():
                opened[name] = open_writer_at(
                    path,
                    name,
                    durable=True,
                    leasing=Leasing(
                        ttl=options.lease_ttl,
                        max_lanes=max(64, 4 * options.concurrency),
                        claim_batch=max(4, 2 * options.concurrency),
                        retry_delay=options.retry_delay,
                        give_up_after=options.give_up_after,
                    ),
                )
        except LedgerError:
            for ledger in opened.values():
                ledger.close()
            raise
        return cls(options, opened)

    # -- lifespan --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.store.start()
        try:
            counts = await self.store.call(
                lambda: {name: app.ledger.counts() for name, app in self.apps.items()},
                writes=False,
            )
            for name, app in self.apps.items():
                app.queued = sum(counts[name][status] for status in UNFINISHED)
                self.metrics.queued.labels(app=name).set(app.queued)
            self.via = transformer.transport(self.options.base_url)
            self.tasks = [
                asyncio.create_task(app.run(), name=f"deliver-{name}")
                for name, app in self.apps.items()
            ]
            self.tasks.append(asyncio.create_task(self._retention(), name="retention"))
            if self.console is not None:
                sampler = self.console.sample_forever(self.stopping)
                self.tasks.append(asyncio.create_task(sampler, name="console-charts"))
            emit(
                logging.INFO,
                "service_started",
                apps=",".join(self.apps),
                queued=sum(app.queued for app in self.apps.values()),
            )
            yield
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self.stopping.set()
        for app in self.apps.values():
            app.stop()
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=self.options.drain_seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                emit(logging.ERROR, "task_failed", task=task.get_name(), error=task.exception())
        if self.via is not None:
            await self.via.aclose()
        if self.console is not None:
            self.console.close()
        await asyncio.to_thread(self.store.close)
        emit(
            logging.INFO,
            "service_stopped",
            queued=sum(app.queued for app in self.apps.values()),
        )

    async def _retention(self) -> None:
        """Drop the lines of finished events older than --keep-days, hourly, in small steps."""
        while not self.stopping.is_set():
            before = time.time() - self.options.keep_days * 86400
            for app in self.apps.values():
                while not self.stopping.is_set() and app.ledger_fault is None:
                    try:
                        dropped = await self.store.call(
                            partial(app.ledger.forget_lines, before, 2000), writes=True
                        )
                    except Exception as error:
                        if not ledger_trouble(error):
                            raise
                        app.ledger_failed(ledger_reason(error, "commit"))
                        break
                    if dropped < 2000:
                        break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), RETENTION_EVERY_S)

    # -- routes ----------------------------------------------------------------------------------

    def _routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route(f"/v1/{kind}", self._counted(f"/v1/{kind}", self._ingest(kind)), methods=["POST"])
            for kind in (*SINGLE_TYPES, "batch")
        ]
        routes += [
            Route("/webhook", self._counted("/webhook", self._ingest("webhook")), methods=["POST"]),
            Route(
                "/v0/destinations/user",
                self._counted("/v0/destinations/user", self._processor),
                methods=["POST"],
            ),
            Route(
                "/routerTransform",
                self._counted("/routerTransform", self._router),
                methods=["POST"],
            ),
            Route("/health", self._health, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        if self.console is not None:
            routes += self.console.routes()
        return routes

    # -- what the console asks of the service -----------------------------------------------------

    async def requeue(self, app: str, keys: Sequence[str]) -> int:
        """Make these events of `app` pending again (its ledger's writer, as `usercom requeue
        --rejected` does), count the queue again and wake the app's delivery loop, which
        takes them in position order."""
        delivery = self.apps[app]

        def work() -> tuple[int, Mapping[str, int]]:
            changed = delivery.ledger.requeue(list(keys), rejected=True)
            return changed, delivery.ledger.counts()

        changed, counts = await self.store.call(work, writes=True)
        delivery.queued = sum(counts[status] for status in UNFINISHED)
        self.metrics.queued.labels(app=app).set(delivery.queued)
        delivery.wake.set()
        emit(logging.INFO, "events_requeued", app=app, count=changed, by="console")
        return changed

    def totals(self, app: str) -> tuple[dict[str, int], int]:
        """The app's delivered, failed and 429 counts since start, and its queue depth."""
        metrics = self.metrics
        counted = {
            "delivered": metrics.total(metrics.delivered, app),
            "failed": metrics.total(metrics.failed, app),
            "throttled": metrics.total(metrics.throttled, app),
            "requests": metrics.total(metrics.api_calls, app),
        }
        return counted, self.apps[app].queued

    def _counted(self, route: str, handler: Handler) -> Handler:
        async def counted(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except ClientDisconnect:
                response = Response(status_code=499)
            self.metrics.requests.labels(route=route, status=str(response.status_code)).inc()
            if route.startswith(("/v1/", "/webhook")):
                self.metrics.ingest_seconds.observe(time.perf_counter() - started)
            return response

        return counted

    def _authorize(self, request: Request) -> AppDelivery:
        sources = self.options.sources
        if sources.open:
            no_foreign_page(request.headers.get("origin"))
            return next(iter(self.apps.values()))
        given = write_key(request.headers.get("authorization"))
        if given is None:
            raise Refused(
                401,
                "unauthorized",
                "no write key: send it as the HTTP Basic user name (empty password)",
            )
        for key, app in sources.write_keys.items():
            if hmac.compare_digest(key.encode(), given.encode()):
                return self.apps[app]
        raise Refused(401, "unauthorized", "invalid write key")

    def _room(self, app: AppDelivery) -> None:
        """503 past --max-queued events or under the free disk floor (the SDKs retry), or
        while the service stops."""
        if self.stopping.is_set():
            raise Refused(503, "stopping", "the service is stopping", {"Retry-After": "5"})
        if app.ledger_fault is not None:  # what it would store could not be committed
            raise Refused(
                503,
                "not_stored",
                "the service cannot store events now (its ledger cannot commit or be read): "
                "try again later",
                {"Retry-After": str(LEDGER_RETRY_AFTER_S)},
            )
        if app.queued >= self.options.max_queued:
            raise Refused(
                503,
                "overloaded",
                f"{app.queued} events are queued for {app.app}, the --max-queued limit: "
                "try again later",
                {"Retry-After": str(QUEUE_RETRY_AFTER_S)},
            )
        now = time.monotonic()
        # A database's room is its server's to watch: the disk check is a file ledger's.
        if now - self._disk_at > DISK_CHECK_S and not isinstance(app.ledger, PgLedger):
            self._disk_at = now
            folder = Path(app.ledger.where).absolute().parent
            try:
                self._disk_free = shutil.disk_usage(folder).free >= self.options.min_free_bytes
            except OSError:
                self._disk_free = True
        if not self._disk_free:
            raise Refused(
                503,
                "overloaded",
                f"less than {self.options.min_free_bytes // (1 << 20)} MB free beside the "
                "ledger: try again later",
                {"Retry-After": str(DISK_RETRY_AFTER_S)},
            )

    async def _body(self, request: Request) -> Parsed:
        body = await read_body(
            request.stream(),
            encoding=request.headers.get("content-encoding"),
            length=request.headers.get("content-length"),
            limit=self.options.max_body,
            drain_seconds=self.options.drain_seconds,
        )
        return await parse_json(body)

    def _ingest(self, kind: str) -> Handler:
        async def ingest(request: Request) -> Response:
            try:
                app = self._authorize(request)
                json_content_type(request.headers.get("content-type"))
                self._room(app)
            except Refused as refused:
                await _drain(request, self.options.drain_seconds)
                return _error(refused)
            try:
                parsed = await self._body(request)
                raw_events = events_of(parsed.document, kind, self.options.max_events)
            except Refused as refused:
                return _error(refused)
            now = time.time()
            stamp = received_at(now)
            admissions = await self._admissions(app.app, raw_events, kind, stamp, parsed.suspect)
            try:
                admitted = await self.store.call(
                    lambda: _admit(app.ledger, admissions, now), writes=True
                )
            except Exception as error:  # noqa: BLE001 - not committed: nothing is acknowledged
                emit(logging.ERROR, "ingest_not_stored", app=app.app, error=str(error))
                if ledger_trouble(error):
                    app.ledger_failed(ledger_reason(error, "commit"))
                return _error(
                    Refused(
                        503,
                        "not_stored",
                        "the events could not be stored: try again later",
                        {"Retry-After": "5"},
                    )
                )
            app.admitted(admitted.queued, admitted.types)
            for event, position in admitted.rejected:
                self.metrics.rejected.labels(app=app.app, type=event.type).inc()
                emit(
                    logging.WARNING,
                    "event_rejected",
                    app=app.app,
                    id=event.key,
                    type=event.type,
                    position=position,
                    error=event.rejected,
                )
            if admitted.duplicates:
                self.metrics.duplicates.labels(app=app.app).inc(admitted.duplicates)
            if admitted.repeated:
                self.metrics.repeated.labels(app=app.app).inc(admitted.repeated)
            return JSONResponse(
                {
                    "success": True,
                    "events": len(admissions),
                    "duplicates": admitted.duplicates,
                    "rejected": len(admitted.rejected),
                }
            )

        return ingest

    async def _admissions(
        self, app: str, raw_events: list[object], kind: str, stamp: str, suspect: bool
    ) -> list[Admission]:
        """Each event as the ledger will hold it. A large batch is worked out in a thread so
        the event loop keeps answering other clients meanwhile."""

        def work() -> list[Admission]:
            limit = self.options.max_event
            return [
                admission(app, event, kind, stamp, limit, suspect=suspect) for event in raw_events
            ]

        return await asyncio.to_thread(work) if len(raw_events) > ADMIT_IN_THREAD else work()

    def _transformer_auth(self, request: Request) -> None:
        json_content_type(request.headers.get("content-type"))
        token = self.options.transformer_token
        if token is None:
            no_foreign_page(request.headers.get("origin"))
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise Refused(
                401, "unauthorized", "send the transformer token as Authorization: Bearer TOKEN"
            )

    def _via(self) -> httpx.AsyncBaseTransport:
        if self.via is None:
            raise Refused(503, "starting", "the service is starting", {"Retry-After": "1"})
        return self.via

    async def _processor(self, request: Request) -> Response:
        try:
            self._transformer_auth(request)
        except Refused as refused:
            await _drain(request, self.options.drain_seconds)
            return _error(refused)
        try:
            answer: Any = await transformer.processor(await self._body(request), self._via())
        except Refused as refused:
            return _error(refused)
        return _SafeJSON(answer)

    async def _router(self, request: Request) -> Response:
        try:
            self._transformer_auth(request)
        except Refused as refused:
            await _drain(request, self.options.drain_seconds)
            return _error(refused)
        try:
            answer: Any = await transformer.router(await self._body(request), self._via())
        except Refused as refused:
            return _error(refused)
        return _SafeJSON(answer)

    # -- health and metrics ----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        reasons = {name: app.waiting_for for name, app in self.apps.items()}
        paused = {name: why for name, why in reasons.items() if why is not None}
        if not paused:
            reason = None
        elif len(self.apps) == 1:
            reason = next(iter(paused.values()))
        else:
            reason = "; ".join(f"{name}: {why}" for name, why in paused.items())
        status = "stopping" if self.stopping.is_set() else "paused" if paused else "ok"
        return {
            "status": status,
            "queued": sum(app.queued for app in self.apps.values()),
            "in_flight": sum(app.in_flight for app in self.apps.values()),
            "paused": reason,
            "apps": {
                name: {"queued": app.queued, "paused": reasons[name], "in_flight": app.in_flight}
                for name, app in self.apps.items()
            },
        }

    async def _health(self, _request: Request) -> Response:
        return JSONResponse(self.health())

    async def _metrics(self, _request: Request) -> Response:
        with contextlib.suppress(Exception):  # the ages are a bonus: never fail a scrape
            oldest = await self.store.call(
                lambda: {name: app.ledger.oldest_received() for name, app in self.apps.items()},
                writes=False,
            )
            now = time.time()
            for name, when in oldest.items():
                age = 0.0 if when is None else max(0.0, now - when)
                self.metrics.oldest.labels(app=name).set(age)
        return Response(self.metrics.text(), media_type=CONTENT_TYPE_LATEST)
