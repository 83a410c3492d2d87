"""``create_app``: the sandbox as a Starlette app, one fresh in-memory account per call.

A thin adapter over ``PublicApi`` (pipeline.sandbox.api), which decides every answer: this
module only reads the request, sleeps the configured latency, and renders the ``Answer``.
A *drop* (dropped or lost response) starts a response that declares a ``Content-Length`` and
then ends the ASGI call without sending the body: uvicorn logs "ASGI callable returned without
completing response" and closes the socket, so an HTTP client sees a transport error (httpx:
``RemoteProtocolError``) while the server keeps serving. Under Starlette's ``TestClient`` a
drop shows as an empty body.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.sandbox.answers import Answer, json_bytes
from pipeline.sandbox.api import API_PREFIX, STATE_PATH, PublicApi, is_api, method_not_allowed
from pipeline.sandbox.errors import not_found_body
from pipeline.sandbox.options import SandboxOptions
from pipeline.sandbox.state import Clock, SandboxState

DECLARED_LENGTH = b"64"
LOG = logging.getLogger("uvicorn.error")  # where uvicorn writes, at its --log-level


def create_app(options: SandboxOptions | None = None, *, clock: Clock | None = None) -> Starlette:
    """A sandbox with an empty account; ``clock`` (default: real UTC time) stamps records.

    >>> app = create_app(SandboxOptions(api_key="secret", seed=7))
    >>> sandbox_state(app).snapshot()
    {'users': [], 'companies': [], 'events': [], 'site_views': [], 'request_count': 0}
    """
    api = PublicApi.build(options, clock=clock)
    state = api.state

    async def show_state(_: Request) -> Response:
        return Response(json_bytes(state.snapshot()), media_type="application/json")

    app = Starlette(
        routes=[Route(STATE_PATH, show_state, methods=["GET"])],
        middleware=[Middleware(Gateway, api=api)],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.router.redirect_slashes = False
    app.state.sandbox = state
    return app


def sandbox_state(app: Starlette) -> SandboxState:
    """The live state behind an app made by ``create_app``, for in-process inspection."""
    state = getattr(app.state, "sandbox", None)
    if not isinstance(state, SandboxState):
        raise TypeError("this app was not made by create_app")
    return state


class Gateway:
    """ASGI middleware before the router: ``PublicApi`` answers every path but the state page.

    Starlette's path patterns are regexes whose ``.`` skips newlines, so a custom id such as
    ``%0A`` would miss them; API paths are matched by ``PublicApi``, segment by segment.
    """

    def __init__(self, app: ASGIApp, api: PublicApi) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == STATE_PATH:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        path = _raw_path(scope)
        latency_ms = self.api.options.latency_ms
        if latency_ms > 0 and is_api(path):
            await asyncio.sleep(latency_ms / 1000)
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            body = await request.body()
        except ClientDisconnect:
            # Nothing to answer, and nothing was done: one line, not uvicorn's traceback.
            LOG.warning(
                "%s %s: the client went away before its request arrived whole",
                request.method,
                path,
            )
            return
        answer = self.api.answer(request.method, path, query, request.headers, body)
        await render(answer)(scope, receive, send)


def render(answer: Answer) -> Response:
    """The Starlette response for an answer (a drop: a response that never sends its body)."""
    if answer.cut:
        return DroppedConnection()
    if answer.body is None:
        return Response(status_code=answer.status, headers=dict(answer.headers))
    return Response(
        answer.content(),
        status_code=answer.status,
        headers=dict(answer.headers),
        media_type="application/json",
    )


class DroppedConnection(Response):
    """A response that promises a body and never sends it: the server closes the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", DECLARED_LENGTH)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})


def _raw_path(scope: Scope) -> str:
    """The still percent-encoded request path, so that ``%2F`` inside a segment survives."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(scope["path"])
    root = scope.get("root_path", "")
    path = path[len(root) :] if root and path.startswith(root) else path
    return path if path.startswith(API_PREFIX) else quote(scope["path"])


async def _not_found(_: Request, __: Exception) -> Response:
    return JSONResponse(not_found_body(), status_code=404)


async def _not_allowed(request: Request, __: Exception) -> Response:
    return render(method_not_allowed(request.method, ("GET",)))
