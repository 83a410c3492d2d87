"""``create_app``: the sandbox as a Starlette app, one fresh in-memory account per call."""

from __future__ import annotations

import hmac
import json
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.sandbox.errors import ApiError, invalid, not_found_body
from pipeline.sandbox.faults import DroppedConnection, Faults, status_response
from pipeline.sandbox.handlers import HANDLERS
from pipeline.sandbox.options import SandboxOptions
from pipeline.sandbox.routing import resolve
from pipeline.sandbox.state import Clock, SandboxState, utc_now

API_PREFIX = "/api/public"
STATE_PATH = "/__sandbox__/state"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


def create_app(options: SandboxOptions | None = None, *, clock: Clock | None = None) -> Starlette:
    """A sandbox with an empty account; ``clock`` (default: real UTC time) stamps records.

    >>> app = create_app(SandboxOptions(api_key="secret", seed=7))
    >>> sandbox_state(app).snapshot()
    {'users': [], 'companies': [], 'events': [], 'site_views': [], 'request_count': 0}
    """
    options = options or SandboxOptions()
    rng = random.Random(options.seed)
    state = SandboxState(
        rng=rng,
        clock=clock or utc_now,
        user_key_field=options.user_key_field,
        unknown_attributes=options.unknown_attributes,
    )
    api = PublicApi(options, state, Faults.build(options, rng))

    async def show_state(_: Request) -> Response:
        return JSONResponse(state.snapshot())

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
    """ASGI middleware before the router: counts requests and answers ``/api/public`` itself.

    Starlette's path patterns are regexes whose ``.`` skips newlines, so a custom id such as
    ``%0A`` would miss them; API paths are matched here, segment by segment, instead.
    """

    def __init__(self, app: ASGIApp, api: PublicApi) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path != STATE_PATH:
            self.api.state.request_count += 1
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            response = await self.api.endpoint(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class PublicApi:
    """Everything under ``/api/public``: faults, trailing slash, auth, routing, handlers."""

    options: SandboxOptions
    state: SandboxState
    faults: Faults

    async def endpoint(self, request: Request) -> Response:
        """Answer one API request, in the order the faults promise."""
        full_path = _raw_path(request.scope)
        api_path = full_path[len(API_PREFIX) :]
        match = resolve(request.method, api_path if api_path.endswith("/") else api_path + "/")
        await self.faults.delay()
        route_name = match.route.name if match is not None and match.route is not None else None
        query = request.scope.get("query_string", b"").decode("latin-1")
        here = full_path + (f"?{query}" if query else "")
        early = self.faults.before_handler(
            request.method, route_name, (api_path, full_path), location=here
        )
        if early is not None:
            return early
        if not full_path.endswith("/"):
            return RedirectResponse(full_path + "/" + (f"?{query}" if query else ""), 301)
        if not self._authorized(request):
            return status_response(401)
        if match is None:
            return JSONResponse(not_found_body(), status_code=404)
        if match.route is None:
            return _method_not_allowed(request.method, match.allowed)
        try:
            body = await _json_body(request) if request.method in WRITE_METHODS else {}
            handler = HANDLERS[match.route.name]
            status, payload = handler(self.state, match.params, request.query_params, body)
        except ApiError as error:
            status, payload = error.status, error.body
        if self.faults.lose_response(request.method):
            return DroppedConnection()
        return JSONResponse(payload, status_code=status)

    def _authorized(self, request: Request) -> bool:
        """``Authorization: Token <key>`` (D-basic, DOC); anything else is answered 401
        ``{"detail": "Invalid token."}`` with ``WWW-Authenticate: Token`` (status: GO, CLIENT;
        body and header: INFER, DRF's TokenAuthentication). §1, §2.1."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "token" or not token:
            return False
        expected = self.options.api_key
        return expected is None or hmac.compare_digest(token.encode(), expected.encode())


def _raw_path(scope: Scope) -> str:
    """The still percent-encoded request path, so that ``%2F`` inside a segment survives."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(scope["path"])
    root = scope.get("root_path", "")
    path = path[len(root) :] if root and path.startswith(root) else path
    return path if path.startswith(API_PREFIX) else quote(scope["path"])


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise ApiError(400, {"detail": f"JSON parse error - {error}"}) from error
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise invalid("non_field_errors", f"Invalid data. Expected a dictionary, but got {kind}.")
    return data


def _method_not_allowed(method: str, allowed: tuple[str, ...]) -> Response:
    return JSONResponse(
        {"detail": f'Method "{method}" not allowed.'},
        status_code=405,
        headers={"Allow": ", ".join(allowed)},
    )


async def _not_found(_: Request, __: Exception) -> Response:
    return JSONResponse(not_found_body(), status_code=404)


async def _not_allowed(request: Request, __: Exception) -> Response:
    return _method_not_allowed(request.method, ("GET",))
