"""The console's routes (DELIVERY §8), mounted by `usercom serve` under /console/.

Pages (server-rendered, readable with scripts off) and the JSON API behind them read each
app's ledger through `reads`, on a read-only connection of the console's own, in a worker
thread: the service's ledger thread, which commits ingest and outcomes, never waits on a
page. A replay goes through the host's requeue (the ledger's writer), which wakes that app's
delivery loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from importlib import resources
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.console import reads
from pipeline.console.auth import COOKIE, CSRF_FIELD, CSRF_HEADER, SESSION_S, Gate, Session, csrf_ok
from pipeline.console.charts import Series, chart
from pipeline.core.answers import Reply, meaning
from pipeline.core.config import Config
from pipeline.delivery.ledger import Ledger, LedgerError, Row

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]
PREFIX: Final = "/console"
SAMPLE_EVERY_S: Final = 5.0
MAX_REQUEUE_BODY: Final = 1 << 20
MAX_FORM_BODY: Final = 64 << 10


class Pacing(Protocol):
    @property
    def rate(self) -> float: ...


class Learned(Protocol):
    @property
    def pacer(self) -> Pacing: ...


class ServedApp(Protocol):
    """What the console reads of one app the service delivers to."""

    @property
    def cfg(self) -> Config: ...
    @property
    def waiting_for(self) -> str | None: ...
    @property
    def state(self) -> Learned | None: ...


class Host(Protocol):
    """The running service, as the console sees it."""

    @property
    def apps(self) -> Mapping[str, ServedApp]: ...

    def reader(self, app: str) -> Ledger:
        """A new reader of `app`'s ledger (no lock: it works while the service writes)."""
        ...

    async def requeue(self, app: str, keys: Sequence[str]) -> int:
        """Make these events of `app` pending again and wake its delivery; how many changed."""
        ...

    def totals(self, app: str) -> tuple[dict[str, int], int]:
        """The app's cumulative delivered / failed / throttled counts and requests to
        User.com, and its queue depth."""
        ...


def _when(seconds: float | None) -> str:
    if not seconds:
        return "—"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float | None) -> str:
    """A duration in the largest unit that keeps it readable.

    >>> _age(0.0123), _age(4.2), _age(150), _age(7300), _age(None)
    ('12 ms', '4.2 s', '2.5 min', '2.0 h', '—')
    """
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _segment(text: str) -> str:
    return quote(text, safe="")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.console", "templates"),
        autoescape=True,  # an event is untrusted input: everything shown of it is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, age=_age, segment=_segment)
    env.globals.update(prefix=PREFIX, csrf_field=CSRF_FIELD)
    return env


def _gloss(answer: str) -> str:
    if not answer.isdigit():
        return f"no answer ({answer})"
    return meaning(Reply(int(answer)))


def _requests(row: Row) -> list[dict[str, str]]:
    return [
        {"method": e.method, "url": e.url, "answer": e.answer, "means": _gloss(e.answer)}
        for e in row.exchanges
    ]


NEXT: Final[Mapping[str, str]] = {
    "delivered": "nothing to do: User.com has it",
    "rejected": "it can never succeed as it is: fix the cause (the user at User.com, the "
    "config) and Replay it, or edit the event and send it again",
    "failed": "the service tries it again by itself, with a growing wait, until --give-up-after; "
    "Replay tries it now",
    "held": "it waits behind an earlier unfinished event of its user and is delivered after it",
    "pending": "queued: the service delivers it in position order",
}


def _story(app: str, row: Row, updated: float | None) -> dict[str, Any]:
    """The event as `usercom explain --json` tells it, with its app."""
    return {
        "app": app,
        "key": row.key,
        "status": row.status,
        "position": row.position,
        "attempts": row.attempts,
        "updated": updated,
        "requests": list(row.requests),
        "error": row.error,
        "warnings": list(row.warnings),
        "line": row.line.decode("utf-8", errors="replace"),
        "next": NEXT[row.status],
    }


class Console:
    """The console of one service: its token gate, templates, readers and charts."""

    def __init__(self, host: Host, token: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.gate = Gate(token, clock)
        self.env = _environment()
        self.series: dict[str, Series] = {name: Series() for name in host.apps}
        self._readers: dict[str, Ledger] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- plumbing ------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        static = resources.files("pipeline.console") / "static"
        pages: list[tuple[str, Handler, list[str]]] = [
            ("/", self._overview, ["GET"]),
            ("/", self._sign_in, ["POST"]),  # the form is at /console/: a post to it signs in
            ("/signin", self._sign_in, ["POST"]),
            ("/signout", self._sign_out, ["POST"]),
            ("/failures", self._failures, ["GET"]),
            ("/events/{key:path}", self._event, ["GET"]),
            ("/users/{app}/{user:path}", self._user, ["GET"]),
            ("/search", self._search, ["GET"]),
            ("/replay", self._replay, ["POST"]),
            ("/api/overview", self._api_overview, ["GET"]),
            ("/api/failures", self._api_failures, ["GET"]),
            ("/api/events/{key:path}", self._api_event, ["GET"]),
            ("/api/users/{app}/{user:path}", self._api_user, ["GET"]),
            ("/api/requeue", self._api_requeue, ["POST"]),
        ]
        inner: list[BaseRoute] = [
            Route(path, self._guarded(handler), methods=methods) for path, handler, methods in pages
        ]
        inner.append(Mount("/static", StaticFiles(directory=str(static)), name="static"))
        return [
            Route(PREFIX, lambda _r: RedirectResponse(f"{PREFIX}/", 308)),
            Mount(PREFIX, routes=inner),
        ]

    def _guarded(self, handler: Handler) -> Handler:
        async def answer(request: Request) -> Response:
            try:
                response = await handler(request)
            except TooLarge:
                problem = f"the form is over {MAX_FORM_BODY // 1024} KB"
                response = self._page(request, "refused.html", 413, problem=problem)
            except LedgerError as trouble:  # the database is down, the file gone: say so, once
                response = self._unreadable(request, trouble)
            # The API's answers hold events too: no cache keeps them, no browser reads them
            # as anything but what they say they are.
            for name, value in (
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ):
                response.headers.setdefault(name, value)
            return response

        return answer

    def _unreadable(self, request: Request, trouble: LedgerError) -> Response:
        words = " ".join(str(trouble).split())
        problem = f"the ledger cannot be read now ({words}): try again shortly"
        if request.url.path.startswith(f"{PREFIX}/api/"):
            return self._api_refusal(503, problem, **{"Retry-After": "5"})
        return self._page(request, "refused.html", 503, problem=problem)

    async def _read(self, app: str, work: Callable[[Ledger], T]) -> T:
        """Run `work` on the console's own reader of `app`'s ledger, in a worker thread; a
        reader that failed is closed and opened again by the next request."""
        lock = self._locks.setdefault(app, asyncio.Lock())
        async with lock:
            book = self._readers.get(app)
            if book is None:
                book = await asyncio.to_thread(self.host.reader, app)
                self._readers[app] = book
            try:
                return await asyncio.to_thread(work, book)
            except LedgerError:
                del self._readers[app]
                with contextlib.suppress(Exception):  # it is broken already: closing is tidying
                    book.close()
                raise

    def close(self) -> None:
        for book in self._readers.values():
            book.close()
        self._readers.clear()

    async def sample_forever(self, stopping: asyncio.Event) -> None:
        """Feed the charts: each app's counters, every few seconds, while the service runs."""
        while not stopping.is_set():
            self.sample(time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), SAMPLE_EVERY_S)

    def sample(self, now: float) -> None:
        for name, series in self.series.items():
            totals, queued = self.host.totals(name)
            series.sample(now, totals, queued)

    # -- who is asking ---------------------------------------------------------------------------

    def _session(self, request: Request) -> Session | None:
        return self.gate.session(request.cookies)

    def _refusal(self, request: Request, *, api: bool) -> Response | None:
        """None when the request may go on (the right Bearer token, or a session); else the
        answer: 401 for a wrong token, 429 while the address is blocked, and without either
        the sign-in form (a page) or 401 (the API)."""
        address = _address(request)
        match self.gate.bearer_try(address, request.headers):
            case "right":
                return None
            case "blocked":
                wait = self.gate.retry_after(address) or 1
                words = f"too many wrong tokens from {address}: try again in {wait} s"
                if api:
                    return self._api_refusal(429, words, **{"Retry-After": str(wait)})
                page = self._sign_in_page(request, 429, words)
                page.headers["Retry-After"] = str(wait)
                return page
            case "wrong":
                if api:
                    return self._api_unauthorized()
                return self._sign_in_page(request, 401, "wrong token")
        if self._session(request) is not None:
            return None
        return self._api_unauthorized() if api else self._to_sign_in(request)

    def _csrf_passes(self, request: Request, form_value: str | None = None) -> bool:
        """A state change: with the Bearer token, or with the session and its CSRF token."""
        if self.gate.bearer(request.headers):
            return True
        session = self._session(request)
        if session is None:
            return False
        given = form_value if form_value is not None else request.headers.get(CSRF_HEADER)
        return csrf_ok(session, given)

    def _page(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        session = self._session(request)
        html = self.env.get_template(name).render(
            csrf=session.csrf if session is not None else "",
            signed_in=session is not None or self.gate.bearer(request.headers),
            **values,
        )
        headers = {
            "Cache-Control": "no-store",
            # Nothing runs and nothing loads from elsewhere: the pages are HTML and CSS only.
            "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        return HTMLResponse(html, status_code=status, headers=headers)

    def _sign_in_page(self, request: Request, status: int = 200, problem: str = "") -> Response:
        return self._page(request, "signin.html", status, problem=problem, apps=[])

    def _to_sign_in(self, request: Request) -> Response:
        return self._sign_in_page(request, 401, "sign in with the console token to see this page")

    @staticmethod
    def _api_refusal(status: int, message: str, **headers: str) -> Response:
        code = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            400: "bad_request",
            413: "too_large",
            503: "unavailable",
        }
        body = {"code": code.get(status, "error"), "message": message}
        return JSONResponse(body, status_code=status, headers=headers or None)

    def _api_unauthorized(self) -> Response:
        return self._api_refusal(
            401, "send the console token as Authorization: Bearer TOKEN, or sign in at /console/"
        )

    # -- sign-in -------------------------------------------------------------------------------

    async def _sign_in(self, request: Request) -> Response:
        address = _address(request)
        wait = self.gate.retry_after(address)
        if wait is not None:
            page = self._sign_in_page(
                request, 429, f"too many wrong tokens from {address}: try again in {wait} s"
            )
            page.headers["Retry-After"] = str(wait)
            return page
        form = await _form(request)
        given = form.get("token")
        sid = self.gate.sign_in(address, given if isinstance(given, str) else "")
        if sid is None:
            return self._sign_in_page(request, 401, "wrong token")
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        response.set_cookie(
            COOKIE,
            sid,
            max_age=int(SESSION_S),
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def _sign_out(self, request: Request) -> Response:
        form = await _form(request)
        value = form.get(CSRF_FIELD)
        if not self._csrf_passes(request, value if isinstance(value, str) else ""):
            return self._page(request, "refused.html", 403, problem="no valid CSRF token")
        self.gate.sign_out(request.cookies)
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    # -- what the pages and the API read -------------------------------------------------------

    async def overview_data(self) -> dict[str, Any]:
        now = time.time()
        self.sample(now)  # the current minute as it stands, not as of the last sample
        apps: dict[str, Any] = {}
        for name, served in self.host.apps.items():
            found = await self._read(name, partial(reads.counts, now=now))
            series = self.series[name]
            state = served.state
            apps[name] = {
                **found.statuses,
                "queued": found.queued,
                "delivered_last_hour": series.last_hour("delivered", now),
                "oldest_queued_age_s": found.oldest_queued_age,
                "latency_p50_s": found.latency_p50,
                "latency_p95_s": found.latency_p95,
                "rate": None if (rate := series.rate()) is None else round(rate, 3),
                "rate_limit": None if state is None else round(state.pacer.rate, 3),
                "throttled_last_hour": series.last_hour("throttled", now),
                "paused": served.waiting_for,
            }
        return {"apps": apps}

    async def failure_groups(self) -> list[reads.Group]:
        groups: list[reads.Group] = []
        for name in self.host.apps:
            groups.extend(await self._read(name, reads.failures))
        return groups

    async def _find_event(self, key: str) -> tuple[str, Row, float | None] | None:
        apps = list(self.host.apps)
        # A full key names its app; a key without one is looked for in each app.
        owner = next((app for app in apps if key.startswith(f"{app}:")), None)
        for name in [owner] if owner is not None else apps:
            found = await self._read(name, lambda book: _row_and_time(book, key))
            if found is not None:
                return name, found[0], found[1]
        return None

    async def _timeline(self, app: str, user: str) -> list[reads.Step] | None:
        served = self.host.apps.get(app)
        if served is None:
            return None
        return await self._read(app, lambda book: reads.timeline(book, served.cfg, user))

    async def requeue(self, keys: Sequence[str] | None, why: str | None, app: str | None) -> int:
        """Requeue named keys, or every event of the groups with reason `why` (in `app`)."""
        changed = 0
        for name in self.host.apps:
            if app is not None and name != app:
                continue
            if keys is not None:
                chosen = await self._read(name, partial(reads.replayable, keys=list(keys)))
            else:
                chosen = await self._read(name, partial(reads.group_keys, why=why or ""))
            if chosen:
                changed += await self.host.requeue(name, chosen)
        return changed

    # -- pages ---------------------------------------------------------------------------------

    async def _overview(self, request: Request) -> Response:
        if self._session(request) is None and "authorization" not in request.headers:
            return self._sign_in_page(request)
        if (refused := self._refusal(request, api=False)) is not None:
            return refused
        data = await self.overview_data()
        now = time.time()
        charts = {name: chart(self.series[name], now) for name in self.host.apps}
        return self._page(request, "overview.html", apps=data["apps"], charts=charts)

    async def _failures(self, request: Request) -> Response:
        if (refused := self._refusal(request, api=False)) is not None:
            return refused
        groups = await self.failure_groups()
        replayed = request.query_params.get("replayed")
        return self._page(
            request,
            "failures.html",
            groups=groups,
            replayed=int(replayed) if replayed and replayed.isdigit() else None,
        )

    async def _event(self, request: Request) -> Response:
        if (refused := self._refusal(request, api=False)) is not None:
            return refused
        key = request.path_params["key"]
        found = await self._find_event(key)
        if found is None:
            return self._page(request, "missing.html", 404, what=f"no event {key!r}")
        app, row, updated = found
        replayed = request.query_params.get("replayed")
        return self._page(
            request,
            "event.html",
            app=app,
            row=row,
            updated=updated,
            requests=_requests(row),
            user=reads.user_of(self.host.apps[app].cfg, row),
            replayable=row.status in reads.PROBLEMS,
            next=NEXT[row.status],
            replayed=int(replayed) if replayed and replayed.isdigit() else None,
        )

    async def _user(self, request: Request) -> Response:
        if (refused := self._refusal(request, api=False)) is not None:
            return refused
        app, user = request.path_params["app"], request.path_params["user"]
        steps = await self._timeline(app, user)
        if steps is None:
            return self._page(request, "missing.html", 404, what=f"no app {app!r}")
        return self._page(request, "user.html", app=app, user=user, steps=steps)

    async def _search(self, request: Request) -> Response:
        if (refused := self._refusal(request, api=False)) is not None:
            return refused
        query = request.query_params.get("q", "").strip()
        if not query:
            return RedirectResponse(f"{PREFIX}/", 303)
        found = await self._find_event(query)
        if found is not None:
            return RedirectResponse(f"{PREFIX}/events/{_segment(found[1].key)}", 303)
        for app in self.host.apps:
            steps = await self._timeline(app, query)
            if steps:
                return RedirectResponse(f"{PREFIX}/users/{_segment(app)}/{_segment(query)}", 303)
        return self._page(
            request, "missing.html", 404, what=f"no event key, messageId or userId {query!r}"
        )

    async def _replay(self, request: Request) -> Response:
        form = await _form(request)
        value = form.get(CSRF_FIELD)
        if (refused := self._refusal(request, api=False)) is not None:
            return refused
        if not self._csrf_passes(request, value if isinstance(value, str) else ""):
            return self._page(request, "refused.html", 403, problem="no valid CSRF token")
        key, why, app = (form.get(name) for name in ("key", "reason", "app"))
        if isinstance(key, str) and key:
            changed = await self.requeue([key], None, None)
            query = urlencode({"replayed": changed})
            return RedirectResponse(f"{PREFIX}/events/{_segment(key)}?{query}", 303)
        if isinstance(why, str) and why:
            changed = await self.requeue(None, why, app if isinstance(app, str) and app else None)
            return RedirectResponse(f"{PREFIX}/failures?{urlencode({'replayed': changed})}", 303)
        return self._page(request, "refused.html", 400, problem="name a key or a reason to replay")

    # -- the JSON API --------------------------------------------------------------------------

    async def _api_overview(self, request: Request) -> Response:
        if (refused := self._refusal(request, api=True)) is not None:
            return refused
        return JSONResponse(await self.overview_data())

    async def _api_failures(self, request: Request) -> Response:
        if (refused := self._refusal(request, api=True)) is not None:
            return refused
        groups = await self.failure_groups()
        return JSONResponse({"groups": [group.as_json() for group in groups]})

    async def _api_event(self, request: Request) -> Response:
        if (refused := self._refusal(request, api=True)) is not None:
            return refused
        key = request.path_params["key"]
        found = await self._find_event(key)
        if found is None:
            return self._api_refusal(404, f"no event {key!r}")
        return JSONResponse(_story(*found))

    async def _api_user(self, request: Request) -> Response:
        if (refused := self._refusal(request, api=True)) is not None:
            return refused
        app, user = request.path_params["app"], request.path_params["user"]
        steps = await self._timeline(app, user)
        if steps is None:
            return self._api_refusal(404, f"no app {app!r}")
        events = [
            {
                "key": step.row.key,
                "position": step.row.position,
                "status": step.row.status,
                "type": step.type,
                "waits_behind": step.waits_behind,
            }
            for step in steps
        ]
        return JSONResponse({"app": app, "user": user, "events": events})

    async def _api_requeue(self, request: Request) -> Response:
        if (refused := self._refusal(request, api=True)) is not None:
            return refused
        if not self._csrf_passes(request):
            return self._api_refusal(
                403, f"a request made with the session cookie needs its CSRF token in {CSRF_HEADER}"
            )
        body = await _bounded_body(request, MAX_REQUEUE_BODY)
        if body is None:
            return self._api_refusal(413, "the body is over 1 MB: requeue fewer keys at a time")
        try:
            asked = json.loads(body)
            keys, why, app = _requeue_request(asked, set(self.host.apps))
        except (ValueError, RecursionError) as problem:
            return self._api_refusal(400, str(problem))
        return JSONResponse({"requeued": await self.requeue(keys, why, app)})


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit`: reading stops there, so a client (signed in
    or not) cannot make the service hold a body of any size in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class TooLarge(Exception):
    """A form body over MAX_FORM_BODY (answered 413)."""


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (the console's forms are no more), read without a multipart parser;
    a field given twice counts once (its first value); TooLarge over 64 KB."""
    body = await _bounded_body(request, MAX_FORM_BODY)
    if body is None:
        raise TooLarge
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        fields.setdefault(name, value)
    return fields


def _row_and_time(book: Ledger, key: str) -> tuple[Row, float | None] | None:
    row = reads.event(book, key)
    return None if row is None else (row, book.updated_at(row.key))


def _is_unicode(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (JSON lets a lone surrogate through)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _requeue_request(
    asked: object, apps: set[str]
) -> tuple[list[str] | None, str | None, str | None]:
    """(keys, reason, app) of a requeue body; ValueError (one line) when it is not one.

    >>> _requeue_request({"keys": ["acme:1"]}, {"acme"})
    (['acme:1'], None, None)
    >>> _requeue_request({"reason": "failed: x", "app": "acme"}, {"acme"})
    (None, 'failed: x', 'acme')
    """
    usage = 'send {"keys": [KEY, ...]} or {"reason": REASON} (optionally with "app")'
    if not isinstance(asked, dict):
        raise ValueError(f"not a JSON object: {usage}")  # noqa: TRY004 - one handler for all
    app = asked.get("app")
    if app is not None and (not isinstance(app, str) or app not in apps):
        raise ValueError(f"no app {app!r}: the apps are {', '.join(sorted(apps))}")
    keys, why = asked.get("keys"), asked.get("reason")
    if (keys is None) == (why is None):
        raise ValueError(usage)
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ValueError(f"keys must be a list of strings: {usage}")
        if not all(_is_unicode(key) for key in keys):
            raise ValueError("a key holds a lone surrogate (\\ud800-\\udfff): no event has it")
        return keys, None, app
    if not isinstance(why, str) or not why:
        raise ValueError("reason must be a group's reason as /console/api/failures gives it")
    return None, why, app
