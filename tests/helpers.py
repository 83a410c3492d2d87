"""Shared helpers for the SPEC §1-§12 example tests.

`FakeUserCom` is a fake User.com built on `httpx.MockTransport`: it records every request it
receives (method, percent-decoded path segments and query, headers, JSON body) and answers each
one from a small route table. Route keys are `"METHOD /path/"` relative to `/api/public`,
percent-decoded; a key may carry a decoded query (`"GET /users/search/?email=a@b.co"`) or be an
fnmatch pattern (`"GET /users-by-id/*"`). Unlisted routes answer 404 `{"detail": "Not found."}`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx

import pipeline

JSONDict = dict[str, Any]

# A realistic 64-character key with a recognisable middle, so a leak is easy to spot.
KEY = "Zk3v" + "SECRETKEY" + "q" * 47 + "0123"
assert len(KEY) == 64
SUB = "acme"
HOST = "acme.user.com"
BASE = "https://acme.user.com/api/public"
API_PREFIX = "/api/public"
HEADERS = {
    "Content-Type": "application/json",
    "Authorization": f"Token {KEY}",
    "Accept": "*/*;version=2",
}

USER: JSONDict = {"id": 7, "user_key": "ukey7abcdefg", "custom_id": "u1", "email": "ada@x.io"}
COMMON_TAGS = {"destType": "USER", "module": "destination", "implementation": "native"}

NOT_FOUND_MESSAGE = {"detail": "Not found."}


@dataclass(frozen=True)
class Reply:
    """One answer of the fake: a status with a JSON body, a text body, or no body."""

    status: int = 200
    json: Any = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> httpx.Response:
        if self.text is not None:
            return httpx.Response(self.status, text=self.text, headers=dict(self.headers))
        if self.json is None:
            return httpx.Response(self.status, headers=dict(self.headers))
        return httpx.Response(self.status, json=self.json, headers=dict(self.headers))


@dataclass(frozen=True)
class Raise:
    """An answer that never comes: the transport raises this httpx error."""

    error: type[httpx.TransportError]


Route = Reply | Raise


def ok(body: Any = None, status: int = 200) -> Reply:
    return Reply(status, USER if body is None else body)


NOT_FOUND = Reply(404, NOT_FOUND_MESSAGE)


@dataclass(frozen=True)
class Seen:
    """A request as the fake received it."""

    method: str
    host: str
    raw_path: str  # as sent, relative to /api/public, still percent-encoded
    raw_query: str
    segments: tuple[str, ...]  # each path segment, percent-decoded
    query: tuple[tuple[str, str], ...]  # percent-decoded pairs
    headers: Mapping[str, str]
    body: Any  # the parsed JSON body, or None

    @property
    def path(self) -> str:
        """The percent-decoded path, relative to /api/public."""
        return unquote(self.raw_path)

    @property
    def call(self) -> str:
        """`METHOD /decoded/path/` plus `?k=v&…` (decoded) when there is a query."""
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.method} {self.path}" + (f"?{query}" if query else "")


class FakeUserCom:
    """A fake User.com: records requests, answers from a route table."""

    def __init__(self, routes: Mapping[str, Route] | None = None, default: Route = NOT_FOUND):
        self.routes: dict[str, Route] = dict(routes or {})
        self.default = default
        self.requests: list[Seen] = []
        self.transport = httpx.MockTransport(self._handle)

    @property
    def calls(self) -> list[str]:
        return [seen.call for seen in self.requests]

    def _route(self, seen: Seen) -> Route:
        for key in (seen.call, f"{seen.method} {seen.path}"):
            if key in self.routes:
                return self.routes[key]
        for pattern, route in self.routes.items():
            if fnmatchcase(seen.call, pattern):
                return route
        return self.default

    def _handle(self, request: httpx.Request) -> httpx.Response:
        raw = request.url.raw_path.decode("ascii")
        raw_path, _, raw_query = raw.partition("?")
        relative = raw_path.removeprefix(API_PREFIX)
        content = request.read()
        seen = Seen(
            method=request.method,
            host=request.url.host,
            raw_path=relative,
            raw_query=raw_query,
            segments=tuple(unquote(s) for s in relative.split("/")[1:-1]),
            query=tuple(parse_qsl(raw_query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=json.loads(content) if content else None,
        )
        self.requests.append(seen)
        route = self._route(seen)
        if isinstance(route, Raise):
            raise route.error("simulated failure", request=request)
        return route.response()


def config(**overrides: Any) -> JSONDict:
    return {"apiKey": KEY, "appSubdomain": SUB, **overrides}


def destination(cfg: JSONDict | None = None) -> JSONDict:
    return {"ID": "dest-1", "Config": config() if cfg is None else cfg}


_NO_METADATA: Any = object()


def item(message: Any, cfg: JSONDict | None = None, metadata: Any = _NO_METADATA) -> JSONDict:
    built: JSONDict = {"message": message, "destination": destination(cfg)}
    if metadata is not _NO_METADATA:
        built["metadata"] = metadata
    return built


def run(message: Any, fake: FakeUserCom | None = None, cfg: JSONDict | None = None) -> JSONDict:
    """`pipeline.process` of one message (default config), through the fake."""
    fake = FakeUserCom() if fake is None else fake
    return pipeline.process(item(message, cfg), transport=fake.transport)


def arun(message: Any, fake: FakeUserCom | None = None, cfg: JSONDict | None = None) -> JSONDict:
    fake = FakeUserCom() if fake is None else fake
    return asyncio.run(pipeline.aprocess(item(message, cfg), transport=fake.transport))


def output(result: JSONDict) -> JSONDict:
    assert result.get("statusCode") == 200, result
    out: JSONDict = result["output"]
    return out


def body(result: JSONDict) -> JSONDict:
    """The JSON body of a successful processor response's final request."""
    payload: JSONDict = output(result)["body"]["JSON"]
    return payload


def final(result: JSONDict) -> tuple[str, str]:
    """(method, endpoint) of a successful processor response's final request."""
    out = output(result)
    return out["method"], out["endpoint"]


def error(result: JSONDict) -> str:
    assert "error" in result, result
    assert "output" not in result, result
    message: str = result["error"]
    return message


def tags(
    category: str, error_type: str, feature: str = "processor", meta: bool = False
) -> JSONDict:
    built: JSONDict = {"errorCategory": category, "errorType": error_type}
    if meta:
        built["meta"] = "instrumentation"
    return {**built, **COMMON_TAGS, "feature": feature}


INSTRUMENTATION = tags("dataValidation", "instrumentation")
CONFIGURATION = tags("dataValidation", "configuration")
ABORTED = tags("network", "aborted")
NOT_FOUND_TAGS = tags("network", "aborted", meta=True)
THROTTLED = tags("network", "throttled")
RETRYABLE = tags("network", "retryable")


def assert_failure(
    result: JSONDict, status: int, stat_tags: JSONDict, message: str | None = None
) -> None:
    assert "output" not in result, result
    assert result["statusCode"] == status, result
    assert result["statTags"] == stat_tags, result
    if message is not None:
        assert result["error"] == message, result
    assert KEY not in json.dumps(result["error"])


def assert_bad_event(result: JSONDict, message: str, fake: FakeUserCom | None = None) -> None:
    """A 400 dataValidation/instrumentation failure with this exact text (and no request)."""
    assert_failure(result, 400, INSTRUMENTATION, message)
    if fake is not None:
        assert fake.requests == [], fake.calls


def assert_bad_config(result: JSONDict, fake: FakeUserCom | None = None) -> None:
    assert_failure(result, 400, CONFIGURATION)
    assert isinstance(result["error"], str)
    assert result["error"]
    if fake is not None:
        assert fake.requests == [], fake.calls


def put(message: JSONDict, dotted: str, value: Any) -> JSONDict:
    """Set a value at a dotted path, creating objects on the way; returns the message."""
    *parents, last = dotted.split(".")
    node = message
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return message


def identify(**fields: Any) -> JSONDict:
    return {"type": "identify", **fields}


def track(**fields: Any) -> JSONDict:
    return {"type": "track", **fields}


def page(**fields: Any) -> JSONDict:
    return {"type": "page", **fields}


def group(**fields: Any) -> JSONDict:
    return {"type": "group", **fields}


def user_found(
    user: JSONDict | None = None, routes: Mapping[str, Route] | None = None
) -> FakeUserCom:
    """A fake where every user lookup (by id or by search) finds `user`."""
    table: dict[str, Route] = dict(routes or {})
    table.setdefault("GET /users-by-id/*", ok(user))
    table.setdefault("GET /users/search/*", ok(user))
    return FakeUserCom(table)


def group_fake(
    user: Route | None = None,
    company: Route | None = None,
    write: Route | None = None,
    *,
    user_id: str = "u1",
    group_id: str = "g1",
) -> FakeUserCom:
    """A fake for group: user found, company not found, created with id 21 (by default)."""
    return FakeUserCom(
        {
            f"GET /users-by-id/{user_id}/": ok() if user is None else user,
            f"GET /companies-by-id/{group_id}/": NOT_FOUND if company is None else company,
            "POST /companies/": Reply(201, {"id": 21, "custom_id": group_id})
            if write is None
            else write,
            "PUT /companies/*": Reply(200, {"id": 33, "custom_id": group_id})
            if write is None
            else write,
        }
    )


def company_write(
    message: JSONDict, cfg: JSONDict | None = None, fake: FakeUserCom | None = None
) -> tuple[JSONDict, FakeUserCom, JSONDict]:
    """Run a group event where the user is found and the company is new.

    Returns (the processor response, the fake, the body of the company write).
    """
    fake = (
        FakeUserCom(
            {
                "GET /users-by-id/*": ok(),
                "POST /companies/": Reply(201, {"id": 21}),
                "PUT /companies/*": Reply(200, {"id": 33}),
            }
        )
        if fake is None
        else fake
    )
    result = run(message, fake, cfg)
    writes = [seen for seen in fake.requests if seen.method in ("POST", "PUT")]
    assert len(writes) == 1, fake.calls
    written: JSONDict = writes[0].body
    return result, fake, written
