"""Edge cases found in review: each pins a SPEC rule on an input the main files do not try."""

from __future__ import annotations

from typing import Any

from helpers import (
    ABORTED,
    CONFIGURATION,
    NOT_FOUND,
    assert_failure,
    config,
    group,
    group_fake,
    identify,
    run,
    scripted,
    track,
)

from pipeline.core.config import normalize_subdomain
from pipeline.testing import Reply

SHORT_KEY_TRACK_ERROR = (
    "No user found with given lookup field, Track event cannot be completed if there is no "
    "valid user"
)


def test_s8_company_write_with_an_empty_id_never_reaches_add_member() -> None:
    fake = group_fake(write=Reply(200, {"id": ""}))
    result = run(group(userId="u1", groupId="g1", traits={"name": "Acme"}), fake)
    assert_failure(result, 400, ABORTED)
    assert not any("add_member" in call for call in fake.calls)


def test_s9_a_short_key_does_not_garble_the_exact_error_texts() -> None:
    fake = scripted(default=NOT_FOUND)
    result = run(track(userId="u1", event="e"), fake, config(apiKey="a"))
    assert result["error"] == SHORT_KEY_TRACK_ERROR


def test_s9_a_short_key_does_not_garble_user_data_in_answers() -> None:
    user = {"id": 5, "user_key": "aaaaaaaaaaaa", "custom_id": "u1"}
    fake = scripted({"GET /users-by-id/u1/": Reply(200, user)})
    page: dict[str, Any] = {
        "type": "page",
        "userId": "u1",
        "timestamp": "2024-05-01T10:00:00Z",
        "context": {"page": {"url": "https://x.io/a", "path": "/a"}},
    }
    result = run(page, fake, config(apiKey="a"))
    assert result["output"]["body"]["JSON"]["client_user"] == "aaaaaaaaaaaa"


def test_s1_non_ascii_subdomain_is_a_configuration_error() -> None:
    assert normalize_subdomain("ACME\u212a") is None
    result = run(identify(userId="u1"), scripted(), config(appSubdomain="acme\u212a"))
    assert_failure(result, 400, CONFIGURATION)


def test_s10_deeply_nested_event_is_an_error_value() -> None:
    message: dict[str, Any] = identify(userId="u1")
    node = message
    for _ in range(5000):
        node["traits"] = {}
        node = node["traits"]
    fake = scripted()
    result = run(message, fake)
    assert result["statusCode"] == 400
    assert result["error"] == "Event is nested too deeply to be read"
    assert fake.calls == []


def test_s10_integer_too_large_to_print_is_treated_as_missing() -> None:
    fake = scripted()
    result = run(identify(userId=10**5000), fake)
    assert result["error"] == "Default lookup field : email value is empty"
    assert fake.calls == []
