"""Shared helpers for the SPEC §1-§12 example tests.

`scripted(routes)` is `pipeline.testing.FakeUserCom` answering from its route table only (see
`pipeline.testing.routes`): it records every request it receives (method, percent-decoded path
segments and query, headers, JSON body) and answers each one from the table. Route keys are
`"METHOD /path/"` relative to `/api/public`, percent-decoded; a key may carry a decoded query
(`"GET /users/search/?email=a@b.co"`) or be an fnmatch pattern (`"GET /users-by-id/*"`).
Unlisted routes answer 404 `{"detail": "Not found."}` (or the `default` given).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pipeline
from pipeline.testing import FakeUserCom, Raise, Reply

JSONDict = dict[str, Any]

# A realistic 64-character key with a recognisable middle, so a leak is easy to spot.
KEY = "Zk3v" + "SECRETKEY" + "q" * 47 + "0123"
assert len(KEY) == 64
SUB = "acme"
HOST = "acme.user.com"
BASE = "https://acme.user.com/api/public"
HEADERS = {
    "Content-Type": "application/json",
    "Authorization": f"Token {KEY}",
    "Accept": "*/*;version=2",
}

USER: JSONDict = {"id": 7, "user_key": "ukey7abcdefg", "custom_id": "u1", "email": "ada@x.io"}
COMMON_TAGS = {"destType": "USER", "module": "destination", "implementation": "native"}

NOT_FOUND_MESSAGE = {"detail": "Not found."}


Route = Reply | Raise


def ok(body: Any = None, status: int = 200) -> Reply:
    return Reply(status, USER if body is None else body)


NOT_FOUND = Reply(404, NOT_FOUND_MESSAGE)


def scripted(routes: Mapping[str, Route] | None = None, default: Route = NOT_FOUND) -> FakeUserCom:
    """User.com answering from this route table only: every other request gets `default`."""
    return FakeUserCom(routes=routes, otherwise=default)


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
    fake = scripted() if fake is None else fake
    return pipeline.process(item(message, cfg), transport=fake)


def arun(message: Any, fake: FakeUserCom | None = None, cfg: JSONDict | None = None) -> JSONDict:
    fake = scripted() if fake is None else fake
    return asyncio.run(pipeline.aprocess(item(message, cfg), transport=fake))


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
    return scripted(table)


def group_fake(
    user: Route | None = None,
    company: Route | None = None,
    write: Route | None = None,
    *,
    user_id: str = "u1",
    group_id: str = "g1",
) -> FakeUserCom:
    """A fake for group: user found, company not found, created with id 21 (by default)."""
    return scripted(
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
        scripted(
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
