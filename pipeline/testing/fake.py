"""``FakeUserCom``: User.com in process, as an httpx transport (sync and async), no socket.

It is the sandbox (``usercom sandbox``) without the server: the same state, handlers and
faults (``pipeline.sandbox.api.PublicApi``), so it gives the same documented answers, and it
needs nothing a plain install lacks (no Starlette, no uvicorn).

>>> import httpx, pipeline
>>> fake = FakeUserCom()
>>> with httpx.Client(transport=fake, base_url="https://acme.user.com/api/public") as client:
...     client.post("/users/", json={"custom_id": "u1"}, headers={"Authorization": "Token k"})
<Response [201 Created]>
>>> fake.state["users"][0]["custom_id"]
'u1'
>>> config = {"apiKey": "k" * 64, "appSubdomain": "acme"}
>>> answer = pipeline.process(
...     {"message": {"type": "identify", "userId": "u1"}, "destination": {"Config": config}},
...     transport=fake,
... )
>>> answer["statusCode"], answer["output"]["endpoint"]
(200, 'https://acme.user.com/api/public/users/1/')
>>> [(seen.method, seen.url) for seen in fake.requests][-1]
('GET', 'https://acme.user.com/api/public/users-by-id/u1/')
>>> FakeUserCom(forced="users-by-id-events-create=503x1", throttle_rate=0.5, seed=3)
FakeUserCom(users=0, companies=0, events=0, site_views=0, requests=0)

The odd cases User.com would not produce on its own go in a route-override table (see
``pipeline.testing.routes``); every other request is answered as before:

>>> odd = FakeUserCom(routes={"GET /users-by-id/*": Reply(500, text="<html>oops</html>")})
>>> answer = pipeline.process(
...     {"message": {"type": "identify", "userId": "u1"}, "destination": {"Config": config}},
...     transport=odd,
... )
>>> answer["statusCode"], odd.calls
(500, ['GET /users-by-id/u1/'])
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, Unpack
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from pipeline.sandbox.answers import Answer
from pipeline.sandbox.api import API_PREFIX, PublicApi
from pipeline.sandbox.options import ForcedStatus, SandboxOptions, parse_forced
from pipeline.sandbox.state import Clock
from pipeline.sandbox.users import UnknownAttributes, UserKeyField
from pipeline.testing.routes import Fixed, Raise, Reply, Route, Routes, answer_from

__all__ = ["FakeOptions", "FakeUserCom", "Raise", "Received", "Reply"]

DISCONNECTED = "Server disconnected without sending a response."


class FakeOptions(TypedDict, total=False):
    """``FakeUserCom``'s keyword arguments: the fields of ``SandboxOptions`` (see there).

    ``forced`` also takes the ``--force`` syntax as text (``"POST /events/=503x3"``), one rule
    or a list of them. A wrong name or type is a ``TypeError`` naming the option.
    """

    api_key: str | None
    user_key_field: UserKeyField
    unknown_attributes: UnknownAttributes
    latency_ms: float
    error_rate: float
    throttle_rate: float
    drop_rate: float
    lost_response_rate: float
    rate_limit_rps: float | None
    rate_limit_per_key: bool
    forced_status: Mapping[str, int]
    forced: Sequence[ForcedStatus | str] | ForcedStatus | str
    seed: int


@dataclass(frozen=True, slots=True)
class Received:
    """One request the fake received: its method, full URL and JSON body (None: no body),
    and its headers (lower-case names). The headers are left out of the repr and of
    comparisons, so a failing test never prints the API key.

    ``path``, ``segments``, ``query`` and ``call`` are percent-decoded and relative to
    ``/api/public``; ``raw_path`` and ``raw_query`` are as sent.
    """

    method: str
    url: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def host(self) -> str:
        return httpx.URL(self.url).host

    @property
    def raw_path(self) -> str:
        return urlsplit(self.url).path.removeprefix(API_PREFIX)

    @property
    def raw_query(self) -> str:
        return urlsplit(self.url).query

    @property
    def path(self) -> str:
        return unquote(self.raw_path)

    @property
    def segments(self) -> tuple[str, ...]:
        """Each path segment, decoded: a ``/`` inside one (sent as ``%2F``) stays inside."""
        return tuple(unquote(segment) for segment in self.raw_path.split("/")[1:-1])

    @property
    def query(self) -> tuple[tuple[str, str], ...]:
        return tuple(parse_qsl(self.raw_query, keep_blank_values=True))

    @property
    def call(self) -> str:
        """``METHOD /path/`` and the decoded ``?k=v&...`` if any: the form of a route key."""
        query = "&".join(f"{name}={value}" for name, value in self.query)
        return f"{self.method} {self.path}" + (f"?{query}" if query else "")


class FakeUserCom(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An in-process User.com, usable wherever httpx takes a transport, sync or async.

    ``FakeUserCom(options)`` takes ``SandboxOptions``; keyword arguments (``FakeOptions``)
    set or override its fields: ``api_key`` (default: any non-empty ``Token`` is accepted),
    ``forced`` / ``forced_status``, ``error_rate``, ``throttle_rate``, ``drop_rate`` and
    ``lost_response_rate`` (a drop or a lost response raises ``httpx.RemoteProtocolError``; a
    lost one after the write is done), ``rate_limit_rps``, ``latency_ms``, ``user_key_field``,
    ``unknown_attributes`` and ``seed`` (user keys and fault draws). ``clock`` stamps records
    (default: the real UTC time).

    ``routes`` overrides the answers of some routes (``pipeline.testing.routes``); what they
    answer never reaches the account (nothing stored, not counted in ``request_count``).
    ``otherwise`` answers every request no route names (a ``Reply`` or ``Raise``; default:
    User.com's own answer), for a test that scripts the whole conversation.

    ``state`` is a snapshot of everything stored (as ``GET /__sandbox__/state`` shows it),
    ``requests`` what was received, ``reset()`` starts again from an empty account. One lock
    guards the account, so threads and event loops may share one fake.
    """

    def __init__(
        self,
        options: SandboxOptions | None = None,
        /,
        *,
        clock: Clock | None = None,
        routes: Routes | None = None,
        otherwise: Fixed | None = None,
        **changes: Unpack[FakeOptions],
    ) -> None:
        if options is not None and not isinstance(options, SandboxOptions):
            raise TypeError(
                f"FakeUserCom takes SandboxOptions or keywords, got {type(options).__name__}"
            )
        self.options = _with(options or SandboxOptions(), changes)
        self._clock = clock
        self.routes: dict[str, Route] = dict(routes or {})
        self.otherwise = otherwise
        self._lock = threading.Lock()
        self._api = PublicApi.build(self.options, clock=clock)
        self._received: list[Received] = []

    # --- what tests look at -----------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """Users, companies, events, site views and the request count, as a fresh snapshot."""
        with self._lock:
            return self._api.state.snapshot()

    @property
    def requests(self) -> list[Received]:
        """The requests received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._received)

    @property
    def calls(self) -> list[str]:
        """Each request received, as ``Received.call`` shows it (``"GET /users-by-id/u1/"``)."""
        return [seen.call for seen in self.requests]

    def reset(self) -> None:
        """Forget everything: an empty account, fresh faults and random source, no requests."""
        with self._lock:
            self._api = PublicApi.build(self.options, clock=self._clock)
            self._received.clear()

    # --- the transport ----------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        seen, routed = self._receive(request, request.read())
        wait = self._wait(routed)
        if wait > 0:
            time.sleep(wait)
        return self._respond(request, seen, routed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        seen, routed = self._receive(request, await request.aread())
        wait = self._wait(routed)
        if wait > 0:
            await asyncio.sleep(wait)
        return self._respond(request, seen, routed)

    def _receive(self, request: httpx.Request, body: bytes) -> tuple[Received, Fixed | None]:
        headers = {name.lower(): value for name, value in request.headers.items()}
        seen = Received(request.method, str(request.url), _parsed(body), headers)
        with self._lock:
            self._received.append(seen)
        # Outside the lock: a route's function may look at the fake (its requests, its state).
        routed = answer_from(self.routes, seen) if self.routes else None
        return seen, self.otherwise if routed is None else routed

    def _wait(self, routed: Fixed | None) -> float:
        return (self.options.latency_ms / 1000) + (0.0 if routed is None else routed.delay)

    def _respond(
        self, request: httpx.Request, seen: Received, routed: Fixed | None
    ) -> httpx.Response:
        if isinstance(routed, Raise):
            raise routed.raised(request)
        if isinstance(routed, Reply):
            return routed.response(request)
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        with self._lock:
            answer = self._api.answer(request.method, path, query, request.headers, request.content)
        if answer.cut:
            raise httpx.RemoteProtocolError(DISCONNECTED, request=request)
        return _response(answer, request)

    def __repr__(self) -> str:
        state = self.state
        counts = ", ".join(f"{name}={len(state[name])}" for name in _SHOWN)
        return f"FakeUserCom({counts}, requests={len(self.requests)})"


_SHOWN = ("users", "companies", "events", "site_views")


def _with(options: SandboxOptions, changes: FakeOptions) -> SandboxOptions:
    if not changes:
        return options
    fields: dict[str, Any] = dict(changes)
    for name, value in fields.items():
        _check_option(name, value)
    if "forced" in fields:
        fields["forced"] = _forced_rules(fields["forced"])
    return replace(options, **fields)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_rule(value: object) -> bool:
    return isinstance(value, str | ForcedStatus)


# Checked here because the keywords come untyped from tests and markers, and a wrong type
# (seed="x", forced="...") would otherwise be accepted and misread rather than refused.
_OPTION_CHECKS: Mapping[str, tuple[str, Callable[[object], bool]]] = {
    "api_key": ("a str or None", lambda value: value is None or isinstance(value, str)),
    "user_key_field": ("a str", lambda value: isinstance(value, str)),
    "unknown_attributes": ("a str", lambda value: isinstance(value, str)),
    "latency_ms": ("a number", _is_number),
    "error_rate": ("a number", _is_number),
    "throttle_rate": ("a number", _is_number),
    "drop_rate": ("a number", _is_number),
    "lost_response_rate": ("a number", _is_number),
    "rate_limit_rps": ("a number or None", lambda value: value is None or _is_number(value)),
    "rate_limit_per_key": ("a bool", lambda value: isinstance(value, bool)),
    "forced_status": (
        "a mapping of route to status",
        lambda value: (
            isinstance(value, Mapping)
            and all(isinstance(key, str) and _is_int(status) for key, status in value.items())
        ),
    ),
    "forced": (
        "a rule ('users-by-id-events-create=503x2' or a ForcedStatus) or a list of them",
        lambda value: (
            _is_rule(value)
            or (isinstance(value, Sequence) and all(_is_rule(rule) for rule in value))
        ),
    ),
    "seed": ("an int", _is_int),
}


def _check_option(name: str, value: object) -> None:
    check = _OPTION_CHECKS.get(name)
    if check is None:
        known = ", ".join(_OPTION_CHECKS)
        raise TypeError(f"FakeUserCom got an unknown option {name!r}; known: {known}")
    expected, accepts = check
    if not accepts(value):
        # A key of the wrong type (bytes) is still a key: name its type only.
        shown = "" if name == "api_key" else f"{value!r} "
        raise TypeError(
            f"FakeUserCom option {name} must be {expected}, got {shown}({type(value).__name__})"
        )


def _forced_rules(
    forced: Sequence[ForcedStatus | str] | ForcedStatus | str,
) -> tuple[ForcedStatus, ...]:
    rules = (forced,) if isinstance(forced, str | ForcedStatus) else forced
    return tuple(parse_forced(rule) if isinstance(rule, str) else rule for rule in rules)


def _parsed(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def _response(answer: Answer, request: httpx.Request) -> httpx.Response:
    headers = dict(answer.headers)
    if answer.body is not None:
        headers["Content-Type"] = "application/json"
    return httpx.Response(answer.status, headers=headers, content=answer.content(), request=request)
