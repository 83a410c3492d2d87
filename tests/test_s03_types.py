"""SPEC §3: message types, and the order of checks (first failure reported, no request)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    CONFIGURATION,
    assert_bad_config,
    assert_bad_event,
    assert_failure,
    config,
    final,
    group,
    group_fake,
    identify,
    item,
    page,
    run,
    scripted,
    track,
    user_found,
)

from pipeline import process


@pytest.mark.parametrize(
    "message",
    [
        {"userId": "u1"},
        {"type": None, "userId": "u1"},
        {"type": 5, "userId": "u1"},
        {"type": True, "userId": "u1"},
        {"type": ["identify"], "userId": "u1"},
        {"type": {"name": "identify"}, "userId": "u1"},
    ],
    ids=["absent", "null", "number", "bool", "list", "object"],
)
def test_s3_missing_or_non_string_type_is_required_error(message: dict[str, Any]) -> None:
    fake = scripted()
    assert_bad_event(run(message, fake), "Event type is required", fake)


@pytest.mark.parametrize("message", [None, "identify", 12, []], ids=["none", "str", "int", "list"])
def test_s3_message_that_is_not_an_object_has_no_type(message: Any) -> None:
    fake = scripted()
    assert_bad_event(run(message, fake), "Event type is required", fake)


@pytest.mark.parametrize(
    ("kind", "lowered"),
    [
        ("screen", "screen"),
        ("alias", "alias"),
        ("trackUser", "trackuser"),
        ("Screen", "screen"),
        ("ALIAS", "alias"),
        ("unknown", "unknown"),
    ],
)
def test_s3_unsupported_type_is_reported_lower_cased(kind: str, lowered: str) -> None:
    fake = scripted()
    result = run({"type": kind, "userId": "u1", "event": "E"}, fake)
    assert_bad_event(result, f"Event type {lowered} is not supported", fake)


@pytest.mark.parametrize("kind", ["identify", "IDENTIFY", "Identify", "iDeNtIfY"])
def test_s3_identify_type_is_case_insensitive(kind: str) -> None:
    assert final(run({"type": kind, "userId": "u1"})) == (
        "POST",
        "https://acme.user.com/api/public/users/",
    )


@pytest.mark.parametrize(
    ("message", "fake_factory", "method", "suffix"),
    [
        (track(userId="u1", event="E"), user_found, "POST", "/events/"),
        (
            page(userId="u1", timestamp="t", context={"page": {"url": "u", "path": "/p"}}),
            user_found,
            "POST",
            "/site-views/",
        ),
        (
            group(userId="u1", groupId="g1", traits={"name": "A"}),
            group_fake,
            "POST",
            "/companies/21/add_member/",
        ),
    ],
    ids=["track", "page", "group"],
)
def test_s3_other_supported_types_are_case_insensitive(
    message: dict[str, Any], fake_factory: Any, method: str, suffix: str
) -> None:
    for kind in (message["type"], message["type"].upper(), message["type"].capitalize()):
        result = run({**message, "type": kind}, fake_factory())
        assert final(result) == (method, "https://acme.user.com/api/public" + suffix)


# --- order of checks ----------------------------------------------------------------------


def test_s3_type_is_checked_before_config() -> None:
    fake = scripted()
    bad_config = config(apiKey="", appSubdomain="evil.com")
    assert_bad_event(run({"userId": "u1"}, fake, bad_config), "Event type is required", fake)
    assert_bad_event(
        run({"type": "screen"}, fake, bad_config), "Event type screen is not supported", fake
    )


def test_s3_missing_destination_config_after_type() -> None:
    fake = scripted()
    result = process({"message": {"type": "alias"}}, transport=fake)
    assert_bad_event(result, "Event type alias is not supported", fake)
    result = process({"message": identify(userId="u1")}, transport=fake)
    assert_failure(result, 400, CONFIGURATION)
    assert fake.requests == []


@pytest.mark.parametrize(
    "message",
    [
        track(),
        page(),
        group(),
        identify(),
    ],
    ids=["track-no-event", "page-nothing", "group-nothing", "identify-nothing"],
)
def test_s3_config_is_checked_before_the_event_fields(message: dict[str, Any]) -> None:
    fake = scripted()
    assert_bad_config(run(message, fake, config(apiKey=None)), fake)
    assert_bad_config(run(message, fake, config(appSubdomain="a.b")), fake)


def test_s3_track_event_name_before_lookup_choice() -> None:
    fake = scripted()
    assert_bad_event(run(track(), fake), "Parameter event is required", fake)
    message = track(integrations={"user": {"lookup": "nope"}})
    assert_bad_event(run(message, fake), "Parameter event is required", fake)


def test_s3_page_fields_before_lookup_choice() -> None:
    fake = scripted()
    assert_bad_event(run(page(), fake), "Parameter url is required", fake)
    message = page(context={"page": {"url": "u"}}, integrations={"user": {"lookup": "x"}})
    assert_bad_event(run(message, fake), "Parameter path is required", fake)


def test_s3_group_fields_before_user_id() -> None:
    fake = scripted()
    assert_bad_event(run(group(), fake), "Parameter name is required", fake)
    assert_bad_event(run(group(traits={"name": "A"}), fake), "Parameter groupId is required", fake)
    assert_bad_event(
        run(group(groupId="g", traits={"name": "A"}), fake),
        'Missing required value from "userId"',
        fake,
    )


def test_s3_lookup_choice_before_payload_identify() -> None:
    fake = scripted()
    # No userId list at all (payload would fail) and an unusable lookup choice: lookup wins.
    message = identify(traits={"email": "e@x.io"}, integrations={"user": {"lookup": "fax"}})
    assert_bad_event(
        run(message, fake), "Lookup field : fax is not supported for this destination", fake
    )
    message = identify(integrations={"user": {"lookup": "email"}})
    assert_bad_event(run(message, fake), "Lookup field : email value is not present", fake)
    assert_bad_event(run(identify(), fake), "Default lookup field : email value is empty", fake)


def test_s3_payload_checked_after_lookup_choice_and_before_any_request() -> None:
    fake = scripted()
    message = identify(traits={"email": "e@x.io"})
    assert_bad_event(run(message, fake), 'Missing required value from "userId"', fake)
    message = track(event="E", traits={"email": "e@x.io"})
    assert_bad_event(run(message, fake), 'Missing required value from "userId"', fake)


def test_s3_lookup_choice_before_payload_track() -> None:
    fake = scripted()
    message = track(event="E")
    assert_bad_event(run(message, fake), "Default lookup field : email value is empty", fake)


def test_s3_no_request_is_made_before_checks_pass_even_with_metadata() -> None:
    fake = scripted()
    result = process(item({"type": "screen"}, metadata={"jobId": 1}), transport=fake)
    assert result["metadata"] == {"jobId": 1}
    assert fake.requests == []
