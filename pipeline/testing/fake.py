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
>>> FakeUserCom(forced=["POST /events/=503x1"], throttle_rate=0.5, seed=3)
FakeUserCom(users=0, companies=0, events=0, site_views=0, requests=0)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping, Sequence
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

    ``forced`` also takes the ``--force`` syntax as text (``"POST /events/=503x3"``).
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
    forced_status: Mapping[str, int]
    forced: Sequence[ForcedStatus | str]
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
    if "forced" in changes:
        fields["forced"] = tuple(
            parse_forced(rule) if isinstance(rule, str) else rule for rule in changes["forced"]
        )
    return replace(options, **fields)


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
