"""SPEC §4: which lookup an event gets — userKey, then the integrations lookup field, then the
top-level userId, then the email — checked on the pure stage and on the wire."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote

from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

import pipeline
from pipeline.testing.strategies import identifiers, messages, valid_configs
from properties import fakes, oracle


@st.composite
def lookup_messages(draw: st.DrawFn) -> dict[str, Any]:
    """Events where every lookup ingredient is independently there or not."""
    message = draw(messages(types=("identify", "track", "page")))
    if draw(st.booleans()):  # make the userKey / email rungs likelier to matter
        message.setdefault("context", {}).setdefault("externalId", []).append(
            {"type": "userKey", "id": draw(st.one_of(identifiers, st.integers(0, 10**6)))}
        )
    if draw(st.booleans()) and isinstance(message.get("traits"), dict):
        message["traits"]["email"] = draw(identifiers)
    return message


@given(lookup_messages())
def test_lookup_precedence(message: dict[str, Any]) -> None:
    expected = oracle.expected_lookup(message)
    event = pipeline.normalize(message).unwrap()
    match pipeline.resolve_lookup(event.message):
        case Success(lookup):
            assert isinstance(expected, tuple), (expected, lookup)
            by, where, value = expected
            assert (lookup.by, lookup.value) == (by, value)
            assert lookup.request.method == "GET"
            if where == "path":
                assert lookup.request.path == ("users-by-id", value)
                assert lookup.request.query == ()
            else:
                assert lookup.request.path == ("users", "search")
                assert lookup.request.query == ((where, value),)
        case Failure(error):
            assert error.message == expected
            assert (error.status, error.category, error.error_type) == (
                400,
                "dataValidation",
                "instrumentation",
            )


@given(lookup_messages(), valid_configs())
def test_the_lookup_request_on_the_wire(message: dict[str, Any], config: dict[str, Any]) -> None:
    """identify sends exactly the lookup of SPEC §4 first (nothing at all when it is an error)."""
    message["type"] = "identify"
    expected = oracle.expected_lookup(message)
    recorder = fakes.user_com(user_found=False)
    result = pipeline.process(
        {"message": message, "destination": {"Config": config}}, transport=recorder.transport
    )
    if isinstance(expected, str):
        assert result["error"] == expected
        assert recorder.requests == []
        return
    if oracle.read(message, oracle.USER_ID) is None:  # §5: custom_id, checked after the lookup
        assert result["error"] == 'Missing required value from "userId"'
        assert recorder.requests == []
        return
    _, where, value = expected
    if where == "path" and value in (".", ".."):  # dot segments are test_urls.py's business
        return
    assert result["statusCode"] == 200, result
    first = recorder.requests[0]
    if where == "path":
        prefix, _, rest = first.url.raw_path.decode().partition("/users-by-id/")
        assert prefix == "/api/public"
        assert unquote(rest.removesuffix("/")) == value
    else:
        assert first.url.path == "/api/public/users/search/"
        assert parse_qs(first.url.query.decode(), keep_blank_values=True) == {where: [value]}
