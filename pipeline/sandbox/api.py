"""``PublicApi``: the sandbox's request handling as plain Python, no web framework.

``answer(method, raw_path, query_string, headers, body)`` takes one HTTP request as bytes and
strings and gives an ``Answer``. Both servers of the sandbox are thin adapters over it: the
Starlette app (``create_app``, over sockets) and ``pipeline.testing.FakeUserCom`` (an httpx
transport, in process), so both answer exactly alike.

Under ``/api/public`` the order is: faults (rate limit, forced statuses, random 429 / 5xx /
drop), the trailing-slash redirect, authentication, routing (404, 405), the handler, then a
lost response (the write is done, the answer never arrives). ``/__sandbox__/state`` shows
everything stored; any other path is a 404. Latency is the adapters' business (a sleep).

>>> api = PublicApi.build(SandboxOptions(api_key="secret", seed=7))
>>> created = api.answer(
...     "POST", "/api/public/users/", "", {"Authorization": "Token secret"}, b'{"custom_id": "u1"}'
... )
>>> created.status, created.body["custom_id"]
(201, 'u1')
>>> api.answer("GET", "/api/public/users-by-id/u1/", "", {}, b"").status
401
>>> api.answer("GET", "/api/public/users-by-id/u1", "", {}, b"").headers["Location"]
'/api/public/users-by-id/u1/'
>>> api.state.snapshot()["request_count"]
3
"""

from __future__ import annotations

import hmac
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote

from pipeline.sandbox.answers import Answer
from pipeline.sandbox.errors import ApiError, invalid, not_found_body
from pipeline.sandbox.faults import Faults, status_answer
from pipeline.sandbox.handlers import HANDLERS
from pipeline.sandbox.options import SandboxOptions
from pipeline.sandbox.routing import resolve
from pipeline.sandbox.state import Clock, SandboxState, utc_now

API_PREFIX = "/api/public"
STATE_PATH = "/__sandbox__/state"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
STATE_METHODS = frozenset({"GET", "HEAD"})
LOCATION_SAFE = ":/%#?=@[]!$&'()*+,;"
"""Characters a redirect's ``Location`` keeps as they are (Starlette's ``RedirectResponse``)."""


def is_api(raw_path: str) -> bool:
    """Whether a path is under ``/api/public``, where faults, auth and the routes apply.

    >>> is_api("/api/public/users/"), is_api("/api/publicity/"), is_api("/__sandbox__/state")
    (True, False, False)
    """
    return raw_path == API_PREFIX or raw_path.startswith(API_PREFIX + "/")


@dataclass(frozen=True, slots=True)
class PublicApi:
    """One sandbox account: its options, its state and its failure plan.

    Not thread-safe by itself (the state, the random source and the token bucket are plain
    objects): a caller serving several threads holds a lock around ``answer``.
    """

    options: SandboxOptions
    state: SandboxState
    faults: Faults

    @classmethod
    def build(
        cls, options: SandboxOptions | None = None, *, clock: Clock | None = None
    ) -> PublicApi:
        """An empty account; ``clock`` (default: real UTC time) stamps records. One random
        source, seeded by ``options.seed``, draws user keys and faults alike."""
        options = options or SandboxOptions()
        rng = random.Random(options.seed)
        state = SandboxState(
            rng=rng,
            clock=clock or utc_now,
            user_key_field=options.user_key_field,
            unknown_attributes=options.unknown_attributes,
        )
        return cls(options, state, Faults.build(options, rng))

    def answer(
        self,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        """Answer one request. ``raw_path`` is still percent-encoded (``%2F`` inside a segment
        survives), ``query_string`` has no ``?``; ``headers`` are looked up by lower-case name
        first (a case-insensitive mapping such as httpx's or Starlette's is best)."""
        if raw_path == STATE_PATH:
            return self._show_state(method)
        self.state.request_count += 1
        if not is_api(raw_path):
            return Answer(404, not_found_body())
        return self._api(method, raw_path, query_string, headers, body)

    def _show_state(self, method: str) -> Answer:
        if method not in STATE_METHODS:
            return method_not_allowed(method, ("GET",))
        return Answer(200, self.state.snapshot() if method == "GET" else None)

    def _api(
        self, method: str, full_path: str, query: str, headers: Mapping[str, str], raw: bytes
    ) -> Answer:
        api_path = full_path[len(API_PREFIX) :]
        match = resolve(method, api_path if api_path.endswith("/") else api_path + "/")
        route_name = match.route.name if match is not None and match.route is not None else None
        here = full_path + (f"?{query}" if query else "")
        authorization = _header(headers, "authorization")
        key = authorization.partition(" ")[2].strip()
        early = self.faults.before_handler(
            method, route_name, (api_path, full_path), location=here, key=key
        )
        if early is not None:
            return early
        if not full_path.endswith("/"):
            target = full_path + "/" + (f"?{query}" if query else "")
            return Answer(301, None, {"Location": quote(target, safe=LOCATION_SAFE)})
        if not self._authorized(authorization):
            return status_answer(401)
        if match is None:
            return Answer(404, not_found_body())
        if match.route is None:
            return method_not_allowed(method, match.allowed)
        try:
            data = json_body(raw) if method in WRITE_METHODS else {}
            params = MappingProxyType(dict(parse_qsl(query, keep_blank_values=True)))
            status, payload = HANDLERS[match.route.name](self.state, match.params, params, data)
        except ApiError as error:
            status, payload = error.status, error.body
        return Answer(status, payload, lost=self.faults.lose_response(method))

    def _authorized(self, authorization: str) -> bool:
        """``Authorization: Token <key>`` (D-basic, DOC); anything else is answered 401
        ``{"detail": "Invalid token."}`` with ``WWW-Authenticate: Token`` (status: GO, CLIENT;
        body and header: INFER, DRF's TokenAuthentication). §1, §2.1."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "token" or not token:
            return False
        expected = self.options.api_key
        return expected is None or hmac.compare_digest(token.encode(), expected.encode())


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header by lower-case name, else by a case-insensitive scan (plain dicts)."""
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), "")


def json_body(raw: bytes) -> dict[str, Any]:
    """A write's JSON object body (empty: ``{}``); anything else is a DRF-style 400.

    >>> json_body(b"[1]")
    Traceback (most recent call last):
    ...
    pipeline.sandbox.errors.ApiError: (400, {'errors': {'non_field_errors': \
['Invalid data. Expected a dictionary, but got list.']}})
    """
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


def method_not_allowed(method: str, allowed: tuple[str, ...]) -> Answer:
    """405 ``{"detail": 'Method "X" not allowed.'}`` with an ``Allow`` header (DRF)."""
    return Answer(405, {"detail": f'Method "{method}" not allowed.'}, {"Allow": ", ".join(allowed)})
