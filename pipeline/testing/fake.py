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
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypedDict, Unpack

import httpx

from pipeline.sandbox.answers import Answer
from pipeline.sandbox.api import PublicApi
from pipeline.sandbox.options import ForcedStatus, SandboxOptions, parse_forced
from pipeline.sandbox.state import Clock
from pipeline.sandbox.users import UnknownAttributes, UserKeyField

__all__ = ["FakeOptions", "FakeUserCom", "Received"]

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
    """One request the fake received: its method, full URL and JSON body (None: no body).

    Headers are not kept, so the API key never lands here.
    """

    method: str
    url: str
    body: Any = None


class FakeUserCom(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An in-process User.com, usable wherever httpx takes a transport, sync or async.

    ``FakeUserCom(options)`` takes ``SandboxOptions``; keyword arguments (``FakeOptions``)
    set or override its fields: ``api_key`` (default: any non-empty ``Token`` is accepted),
    ``forced`` / ``forced_status``, ``error_rate``, ``throttle_rate``, ``drop_rate`` and
    ``lost_response_rate`` (a drop or a lost response raises ``httpx.RemoteProtocolError``; a
    lost one after the write is done), ``rate_limit_rps``, ``latency_ms``, ``user_key_field``,
    ``unknown_attributes`` and ``seed`` (user keys and fault draws). ``clock`` stamps records
    (default: the real UTC time).

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
        **changes: Unpack[FakeOptions],
    ) -> None:
        if options is not None and not isinstance(options, SandboxOptions):
            raise TypeError(
                f"FakeUserCom takes SandboxOptions or keywords, got {type(options).__name__}"
            )
        self.options = _with(options or SandboxOptions(), changes)
        self._clock = clock
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

    def reset(self) -> None:
        """Forget everything: an empty account, fresh faults and random source, no requests."""
        with self._lock:
            self._api = PublicApi.build(self.options, clock=self._clock)
            self._received.clear()

    # --- the transport ----------------------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.options.latency_ms > 0:
            time.sleep(self.options.latency_ms / 1000)
        return self._respond(request, request.read())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.options.latency_ms > 0:
            await asyncio.sleep(self.options.latency_ms / 1000)
        return self._respond(request, await request.aread())

    def _respond(self, request: httpx.Request, body: bytes) -> httpx.Response:
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        seen = Received(request.method, str(request.url), _parsed(body))
        with self._lock:
            self._received.append(seen)
            answer = self._api.answer(request.method, path, query, request.headers, body)
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
