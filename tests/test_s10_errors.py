"""SPEC §10: every failure is a value: exact message, HTTP-like status, statTags; no key."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from helpers import (
    ABORTED,
    CONFIGURATION,
    INSTRUMENTATION,
    KEY,
    NOT_FOUND_TAGS,
    RETRYABLE,
    THROTTLED,
    assert_failure,
    config,
    group,
    group_fake,
    identify,
    ok,
    page,
    run,
    scripted,
    tags,
    track,
)

from pipeline import process, process_router
from pipeline.testing import FakeUserCom, Raise, Reply

# --- bad events: 400 dataValidation/instrumentation ---------------------------------------

BAD_EVENTS: list[Any] = [
    pytest.param({"userId": "u1"}, "Event type is required", id="no-type"),
    pytest.param({"type": "alias"}, "Event type alias is not supported", id="alias"),
    pytest.param(track(userId="u1"), "Parameter event is required", id="no-event"),
    pytest.param(page(userId="u1"), "Parameter url is required", id="no-url"),
    pytest.param(
        page(userId="u1", context={"page": {"url": "u"}}),
        "Parameter path is required",
        id="no-path",
    ),
    pytest.param(
        page(userId="u1", context={"page": {"url": "u", "path": "/"}}),
        "Parameter timestamp is required",
        id="no-timestamp",
    ),
    pytest.param(group(userId="u1", groupId="g"), "Parameter name is required", id="no-name"),
    pytest.param(
        group(userId="u1", traits={"name": "A"}), "Parameter groupId is required", id="no-groupId"
    ),
    pytest.param(
        identify(traits={"email": "e@x.io"}), 'Missing required value from "userId"', id="no-userId"
    ),
    pytest.param(identify(), "Default lookup field : email value is empty", id="no-lookup"),
    pytest.param(
        identify(userId="u", integrations={"user": {"lookup": "email"}}),
        "Lookup field : email value is not present",
        id="lookup-email-missing",
    ),
    pytest.param(
        identify(userId="u", integrations={"user": {"lookup": "phone"}}),
        "Lookup field : phone value is not present",
        id="lookup-phone-missing",
    ),
    pytest.param(
        identify(userId="u", integrations={"user": {"lookup": "fax"}}),
        "Lookup field : fax is not supported for this destination",
        id="lookup-unsupported",
    ),
]


@pytest.mark.parametrize(("message", "text"), BAD_EVENTS)
def test_s10_bad_event_is_400_data_validation_instrumentation(
    message: dict[str, Any], text: str
) -> None:
    fake = scripted()
    assert_failure(run(message, fake), 400, INSTRUMENTATION, text)
    assert fake.requests == []


@pytest.mark.parametrize(
    "cfg",
    [
        config(apiKey=None),
        config(apiKey=""),
        config(appSubdomain=None),
        config(appSubdomain="evil.com/x"),
    ],
    ids=["no-key", "empty-key", "no-subdomain", "bad-subdomain"],
)
def test_s10_bad_config_is_400_data_validation_configuration(cfg: dict[str, Any]) -> None:
    fake = scripted()
    result = run(identify(userId="u1"), fake, cfg)
    assert_failure(result, 400, CONFIGURATION)
    assert fake.requests == []


# --- User.com answers ---------------------------------------------------------------------

NETWORK: list[Any] = [
    pytest.param(
        Reply(401, {"detail": "Invalid token."}), 401, tags("network", "aborted"), id="401"
    ),
    pytest.param(Reply(403, {"detail": "Forbidden"}), 403, tags("network", "aborted"), id="403"),
    pytest.param(Reply(400, {"detail": "Bad"}), 400, ABORTED, id="400"),
    pytest.param(Reply(410), 400, ABORTED, id="410"),
    pytest.param(Reply(429, headers={"Retry-After": "12"}), 429, THROTTLED, id="429"),
    pytest.param(Reply(500), 500, RETRYABLE, id="500"),
    pytest.param(Reply(501), 501, RETRYABLE, id="501"),
    pytest.param(Reply(502), 502, RETRYABLE, id="502"),
    pytest.param(Reply(503), 503, RETRYABLE, id="503"),
    pytest.param(Reply(504), 504, RETRYABLE, id="504"),
    pytest.param(Raise(httpx.ReadTimeout), 500, RETRYABLE, id="read-timeout"),
    pytest.param(Raise(httpx.WriteTimeout), 500, RETRYABLE, id="write-timeout"),
    pytest.param(Raise(httpx.PoolTimeout), 500, RETRYABLE, id="pool-timeout"),
    pytest.param(Raise(httpx.ConnectError), 500, RETRYABLE, id="connect-error"),
    pytest.param(Raise(httpx.ReadError), 500, RETRYABLE, id="read-error"),
]


@pytest.mark.parametrize(("answer", "status", "stat_tags"), NETWORK)
def test_s10_user_com_answers_map_to_status_and_tags(
    answer: Any, status: int, stat_tags: dict[str, str]
) -> None:
    fake = scripted({"GET /users-by-id/u1/": answer})
    result = run(identify(userId="u1"), fake)
    assert_failure(result, status, stat_tags)
    assert result["error"]


@pytest.mark.parametrize(("answer", "status", "stat_tags"), NETWORK)
def test_s10_router_uses_the_same_status_and_tags(
    answer: Any, status: int, stat_tags: dict[str, str]
) -> None:
    fake = scripted({"GET /users-by-id/u1/": answer})
    items = [{"message": identify(userId="u1"), "destination": {"Config": config()}}]
    [result] = process_router(items, transport=fake)
    assert result["statusCode"] == status
    assert result["statTags"] == {**stat_tags, "feature": "router"}


# --- user not found: 400 network/aborted with meta: instrumentation -----------------------

TRACK_NOT_FOUND = (
    "No user found with given lookup field, Track event cannot be completed if there is no "
    "valid user"
)
PAGE_NOT_FOUND = (
    "No user found with given lookup field. Page event cannot be completed if there is no "
    "valid user"
)
PHONE = {"traits": {"phone": "+1"}, "integrations": {"user": {"lookup": "phone"}}}


@pytest.mark.parametrize(
    ("message", "fake", "text"),
    [
        pytest.param(track(userId="u1", event="E"), scripted(), TRACK_NOT_FOUND, id="track"),
        pytest.param(
            page(userId="u1", timestamp="t", context={"page": {"url": "u", "path": "/"}}),
            scripted(),
            PAGE_NOT_FOUND,
            id="page",
        ),
        pytest.param(
            group(userId="u1", groupId="g1", traits={"name": "A"}),
            group_fake(user=Reply(404)),
            "No user found with given userId",
            id="group",
        ),
        pytest.param(
            identify(userId="u1", **PHONE),
            scripted({"GET /users/search/*": ok({"results": []})}),
            "No user found for a given lookup field",
            id="phone-none",
        ),
        pytest.param(
            track(userId="u1", event="E", **PHONE),
            scripted({"GET /users/search/*": ok({"results": [{"id": 1}, {"id": 2}]})}),
            "Multiple users obtained for a given lookup field",
            id="phone-several",
        ),
    ],
)
def test_s10_user_not_found_errors_carry_meta_instrumentation(
    message: dict[str, Any], fake: FakeUserCom, text: str
) -> None:
    assert_failure(run(message, fake), 400, NOT_FOUND_TAGS, text)
    assert len(fake.requests) == 1


def test_s10_other_errors_have_no_meta() -> None:
    for result in (
        run(identify(userId="u1"), scripted({"GET /users-by-id/u1/": Reply(500)})),
        run(track(userId="u1"), scripted()),
        run(identify(userId="u1"), scripted(), config(apiKey="")),
    ):
        assert "meta" not in result["statTags"]


# --- the key never shows ------------------------------------------------------------------


def test_s10_key_never_in_network_error_messages() -> None:
    for answer in (
        Reply(401, {"detail": "Invalid token."}),
        Reply(403),
        Reply(429),
        Reply(500, text="Internal Server Error"),
        Raise(httpx.ConnectError),
        Reply(302, headers={"Location": "/login/"}),
    ):
        result = run(identify(userId="u1"), scripted({"GET /users-by-id/u1/": answer}))
        assert KEY not in json.dumps(result)


def test_s10_key_echoed_by_user_com_is_not_repeated_in_the_error() -> None:
    answer = Reply(401, {"detail": f"Invalid token {KEY}"})
    result = run(identify(userId="u1"), scripted({"GET /users-by-id/u1/": answer}))
    assert result["statusCode"] == 401
    assert KEY not in result["error"]


def test_s10_key_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        run(identify(userId="u1", traits={"gender": "x"}), scripted())
        run(identify(userId="u1"), scripted({"GET /users-by-id/u1/": Reply(401)}))
        run(
            track(userId="u1", event="E", timestamp="never"),
            scripted({"GET /users-by-id/u1/": ok()}),
        )
    assert all(KEY not in record.getMessage() for record in caplog.records)


# --- failures are values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_item",
    [
        {},
        {"message": None},
        {"message": identify(userId="u1")},
        {"message": identify(userId="u1"), "destination": None},
        {"message": identify(userId="u1"), "destination": {"Config": None}},
        {"message": identify(userId="u1"), "destination": {"Config": "text"}},
        {
            "message": identify(userId="u1"),
            "destination": {"Config": {"apiKey": 5, "appSubdomain": 6}},
        },
        {"message": identify(userId={"a": 1}), "destination": {"Config": config()}},
        {
            "message": identify(userId="u1", traits="not-an-object"),
            "destination": {"Config": config()},
        },
        {"message": identify(userId="u1", context="x"), "destination": {"Config": config()}},
        {
            "message": track(userId="u1", event="E", properties=[1, 2]),
            "destination": {"Config": config()},
        },
    ],
    ids=[
        "empty",
        "null-message",
        "no-destination",
        "null-destination",
        "null-config",
        "text-config",
        "non-string-settings",
        "object-user-id",
        "traits-text",
        "context-text",
        "properties-list",
    ],
)
def test_s10_failures_are_values_never_exceptions(raw_item: dict[str, Any]) -> None:
    result = process(raw_item, transport=scripted())
    assert isinstance(result["statusCode"], int)
    if result["statusCode"] != 200:
        assert isinstance(result["error"], str)
        assert result["error"]
        assert result["statTags"]["errorCategory"] in ("dataValidation", "network")


def test_s10_retryable_kinds_are_only_throttled_and_retryable() -> None:
    throttled = run(identify(userId="u1"), scripted({"GET /users-by-id/u1/": Reply(429)}))
    retry = run(identify(userId="u1"), scripted({"GET /users-by-id/u1/": Reply(503)}))
    aborted = run(identify(userId="u1"), scripted({"GET /users-by-id/u1/": Reply(401)}))
    assert throttled["statTags"]["errorType"] == "throttled"
    assert retry["statTags"]["errorType"] == "retryable"
    assert aborted["statTags"]["errorType"] == "aborted"


def test_s10_network_error_message_says_what_to_do() -> None:
    unauthorized = run(
        identify(userId="u1"),
        scripted({"GET /users-by-id/u1/": Reply(401, {"detail": "Invalid token."})}),
    )
    assert "401" in unauthorized["error"]
    assert "Invalid token." in unauthorized["error"]
    throttled = run(
        identify(userId="u1"),
        scripted({"GET /users-by-id/u1/": Reply(429, {"detail": "Slow down"})}),
    )
    assert "429" in throttled["error"]
    assert "Slow down" in throttled["error"]
