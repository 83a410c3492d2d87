"""SPEC §4: user lookup: precedence, integration names, lookup fields, and every answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from helpers import (
    ABORTED,
    BASE,
    NOT_FOUND_TAGS,
    RETRYABLE,
    THROTTLED,
    USER,
    assert_bad_event,
    assert_failure,
    body,
    final,
    identify,
    ok,
    page,
    run,
    scripted,
    tags,
    track,
)

from pipeline.testing import Raise, Reply

EMAIL = "ada@x.io"
EVERYTHING: dict[str, Any] = {
    "userId": "u1",
    "traits": {"email": EMAIL, "phone": "+48123"},
    "context": {"externalId": [{"type": "userKey", "id": "K1"}]},
    "integrations": {"User.com": {"lookup": "phone"}},
}


def lookups(message: dict[str, Any]) -> list[str]:
    fake = scripted()
    run(message, fake)
    return fake.calls


# --- precedence ---------------------------------------------------------------------------


def test_s4_user_key_wins_over_everything() -> None:
    assert lookups(identify(**EVERYTHING)) == ["GET /users/search/?key=K1"]


def test_s4_user_key_found_among_other_external_ids() -> None:
    external = [{"type": "email", "id": "x@y.io"}, {"type": "userKey", "id": "K2"}]
    message = identify(userId="u1", context={"externalId": external})
    assert lookups(message) == ["GET /users/search/?key=K2"]


@pytest.mark.parametrize(("key", "text"), [(12345, "12345"), (0, "0")])
def test_s4_numeric_user_key_is_turned_into_a_string(key: int, text: str) -> None:
    message = identify(userId="u1", context={"externalId": [{"type": "userKey", "id": key}]})
    assert lookups(message) == [f"GET /users/search/?key={text}"]


@pytest.mark.parametrize("empty", ["", None])
def test_s4_empty_user_key_is_not_used(empty: Any) -> None:
    message = identify(userId="u1", context={"externalId": [{"type": "userKey", "id": empty}]})
    assert lookups(message) == ["GET /users-by-id/u1/"]


def test_s4_external_id_of_other_type_is_not_a_user_key() -> None:
    message = identify(userId="u1", context={"externalId": [{"type": "userkey", "id": "K"}]})
    assert lookups(message) == ["GET /users-by-id/u1/"]


def test_s4_lookup_field_wins_over_user_id() -> None:
    message = {**EVERYTHING, "context": {}}
    assert lookups(identify(**message)) == ["GET /users/search/?phone_number=+48123"]


def test_s4_user_id_wins_over_email() -> None:
    assert lookups(identify(userId="u1", traits={"email": EMAIL})) == ["GET /users-by-id/u1/"]


def test_s4_user_id_lookup_uses_top_level_user_id_value() -> None:
    message = identify(userId="top", traits={"userId": "t", "id": "i"}, anonymousId="anon")
    assert lookups(message) == ["GET /users-by-id/top/"]


def test_s4_user_id_only_in_traits_falls_back_to_email() -> None:
    message = identify(traits={"userId": "t1", "email": EMAIL}, anonymousId="anon")
    assert lookups(message) == [f"GET /users/search/?email={EMAIL}"]


@pytest.mark.parametrize("path", ["traits", "context.traits", "properties"])
def test_s4_email_lookup_reads_email_only_list(path: str) -> None:
    message: dict[str, Any] = identify(anonymousId="anon")
    if path == "context.traits":
        message["context"] = {"traits": {"email": EMAIL}}
    else:
        message[path] = {"email": EMAIL}
    assert lookups(message) == [f"GET /users/search/?email={EMAIL}"]


def test_s4_no_lookup_possible_is_default_lookup_error() -> None:
    fake = scripted()
    message = identify(anonymousId="anon", traits={"userId": "t1", "phone": "+1"})
    assert_bad_event(run(message, fake), "Default lookup field : email value is empty", fake)


# --- integration names --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["user", "USER", "User", "User.com", "user.com", "USER.com"])
def test_s4_integration_name_variants(name: str) -> None:
    message = identify(
        userId="u1", traits={"email": EMAIL}, integrations={name: {"lookup": "email"}}
    )
    assert lookups(message) == [f"GET /users/search/?email={EMAIL}"]


@pytest.mark.parametrize("name", ["USER.COM", "usercom", "User.Com", "All", "Intercom"])
def test_s4_other_integration_names_are_ignored(name: str) -> None:
    message = identify(
        userId="u1", traits={"email": EMAIL}, integrations={name: {"lookup": "email"}}
    )
    assert lookups(message) == ["GET /users-by-id/u1/"]


@pytest.mark.parametrize("flag", [True, False])
def test_s4_boolean_integration_entry_does_not_count(flag: bool) -> None:
    integrations = {"user": flag, "USER": {"lookup": "phone"}}
    message = identify(userId="u1", traits={"phone": "+1"}, integrations=integrations)
    assert lookups(message) == ["GET /users/search/?phone_number=+1"]


def test_s4_first_object_entry_decides_even_without_lookup() -> None:
    integrations = {"user": {}, "USER": {"lookup": "email"}}
    message = identify(userId="u1", traits={"email": EMAIL}, integrations=integrations)
    assert lookups(message) == ["GET /users-by-id/u1/"]


def test_s4_integration_names_are_tried_in_listed_order() -> None:
    integrations = {"USER.com": {"lookup": "phone"}, "User.com": {"lookup": "email"}}
    message = identify(
        userId="u1", traits={"email": EMAIL, "phone": "+1"}, integrations=integrations
    )
    assert lookups(message) == [f"GET /users/search/?email={EMAIL}"]


@pytest.mark.parametrize("empty", ["", None])
def test_s4_empty_lookup_falls_through_to_user_id(empty: Any) -> None:
    message = identify(userId="u1", integrations={"user": {"lookup": empty}})
    assert lookups(message) == ["GET /users-by-id/u1/"]


# --- lookup fields ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["email", "Email", "EMAIL", "eMail"])
def test_s4_email_lookup_field_case_insensitive(field: str) -> None:
    message = identify(
        userId="u1", traits={"email": EMAIL}, integrations={"user": {"lookup": field}}
    )
    assert lookups(message) == [f"GET /users/search/?email={EMAIL}"]


@pytest.mark.parametrize("field", ["phone", "Phone", "PHONE"])
def test_s4_phone_lookup_field_case_insensitive(field: str) -> None:
    message = identify(
        userId="u1", traits={"phone": "+1"}, integrations={"user": {"lookup": field}}
    )
    assert lookups(message) == ["GET /users/search/?phone_number=+1"]


@pytest.mark.parametrize("path", ["traits", "context.traits", "properties"])
def test_s4_phone_lookup_reads_phone_list(path: str) -> None:
    message: dict[str, Any] = identify(userId="u1", integrations={"user": {"lookup": "phone"}})
    if path == "context.traits":
        message["context"] = {"traits": {"phone": "+2"}}
    else:
        message[path] = {"phone": "+2"}
    assert lookups(message) == ["GET /users/search/?phone_number=+2"]


def test_s4_email_lookup_field_without_email_is_error() -> None:
    fake = scripted()
    message = identify(
        userId="u1", traits={"phone": "+1"}, integrations={"user": {"lookup": "email"}}
    )
    assert_bad_event(run(message, fake), "Lookup field : email value is not present", fake)


def test_s4_phone_lookup_field_without_phone_is_error() -> None:
    fake = scripted()
    message = identify(
        userId="u1", traits={"email": EMAIL}, integrations={"user": {"lookup": "phone"}}
    )
    assert_bad_event(run(message, fake), "Lookup field : phone value is not present", fake)


@pytest.mark.parametrize("field", ["userId", "custom_id", "Fax", "user_key", "e-mail"])
def test_s4_unsupported_lookup_field_is_error_with_its_name(field: str) -> None:
    fake = scripted()
    message = identify(
        userId="u1", traits={"email": EMAIL}, integrations={"user": {"lookup": field}}
    )
    assert_bad_event(
        run(message, fake), f"Lookup field : {field} is not supported for this destination", fake
    )


# --- answers of a lookup (identify) ------------------------------------------------------

IDENTIFY = identify(userId="u1", traits={"email": EMAIL})


def test_s4_found_user_object_leads_to_put_on_its_id() -> None:
    fake = scripted({"GET /users-by-id/u1/": ok({"id": 91, "user_key": "k"})})
    result = run(IDENTIFY, fake)
    assert final(result) == ("PUT", f"{BASE}/users/91/")
    assert body(result) == {"custom_id": "u1", "email": EMAIL}
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s4_not_found_leads_to_post_users() -> None:
    fake = scripted({"GET /users-by-id/u1/": Reply(404, {"detail": "Not found."})})
    result = run(IDENTIFY, fake)
    assert final(result) == ("POST", f"{BASE}/users/")
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s4_not_found_without_body_leads_to_post_users() -> None:
    fake = scripted({"GET /users-by-id/u1/": Reply(404)})
    assert final(run(IDENTIFY, fake)) == ("POST", f"{BASE}/users/")


FAILURES: list[Any] = [
    pytest.param(
        Reply(401, {"detail": "Invalid token."}), 401, tags("network", "aborted"), id="401"
    ),
    pytest.param(Reply(403, {"detail": "Forbidden."}), 403, tags("network", "aborted"), id="403"),
    pytest.param(
        Reply(429, {"detail": "Request was throttled."}, headers={"Retry-After": "30"}),
        429,
        THROTTLED,
        id="429-retry-after",
    ),
    pytest.param(Reply(429), 429, THROTTLED, id="429-bare"),
    pytest.param(Reply(500, {"detail": "boom"}), 500, RETRYABLE, id="500"),
    pytest.param(Reply(502, text="Bad Gateway"), 502, RETRYABLE, id="502"),
    pytest.param(Reply(503), 503, RETRYABLE, id="503"),
    pytest.param(Reply(504), 504, RETRYABLE, id="504"),
    pytest.param(Raise(httpx.ConnectError), 500, RETRYABLE, id="connect-error"),
    pytest.param(Raise(httpx.ReadTimeout), 500, RETRYABLE, id="read-timeout"),
    pytest.param(Raise(httpx.ConnectTimeout), 500, RETRYABLE, id="connect-timeout"),
    pytest.param(Raise(httpx.RemoteProtocolError), 500, RETRYABLE, id="protocol-error"),
    pytest.param(Reply(400, {"detail": "Bad request."}), 400, ABORTED, id="400"),
    pytest.param(Reply(405, {"detail": "Method not allowed."}), 400, ABORTED, id="405"),
    pytest.param(Reply(409), 400, ABORTED, id="409"),
    pytest.param(Reply(422, {"errors": {"email": ["bad"]}}), 400, ABORTED, id="422"),
    pytest.param(Reply(301, headers={"Location": "https://evil.example/"}), 400, ABORTED, id="301"),
    pytest.param(Reply(302, headers={"Location": "/login/"}), 400, ABORTED, id="302"),
    pytest.param(Reply(200, text="<html>hello</html>"), 400, ABORTED, id="200-html"),
    pytest.param(Reply(200, [USER]), 400, ABORTED, id="200-json-list"),
    pytest.param(Reply(200, "just a string"), 400, ABORTED, id="200-json-string"),
    pytest.param(Reply(200), 400, ABORTED, id="200-empty"),
    pytest.param(Reply(204), 400, ABORTED, id="204"),
]


@pytest.mark.parametrize(("answer", "status", "stat_tags"), FAILURES)
def test_s4_identify_lookup_failures_are_classified(
    answer: Any, status: int, stat_tags: dict[str, str]
) -> None:
    fake = scripted({"GET /users-by-id/u1/": answer})
    result = run(IDENTIFY, fake)
    assert_failure(result, status, stat_tags)
    # A failed lookup never leads to creating (or updating) a user; no retry inside process.
    assert fake.calls == ["GET /users-by-id/u1/"]


@pytest.mark.parametrize(("answer", "status", "stat_tags"), FAILURES)
def test_s4_track_lookup_failures_are_classified(
    answer: Any, status: int, stat_tags: dict[str, str]
) -> None:
    fake = scripted({"GET /users-by-id/u1/": answer})
    assert_failure(run(track(userId="u1", event="E"), fake), status, stat_tags)
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s4_page_lookup_failure_is_classified() -> None:
    fake = scripted({"GET /users/search/*": Reply(429, headers={"Retry-After": "5"})})
    message = page(
        anonymousId="a1",
        traits={"email": EMAIL},
        timestamp="t",
        context={"page": {"url": "u", "path": "/"}},
    )
    assert_failure(run(message, fake), 429, THROTTLED)
    assert fake.calls == [f"GET /users/search/?email={EMAIL}"]


def test_s4_error_message_says_what_user_com_answered() -> None:
    fake = scripted({"GET /users-by-id/u1/": Reply(422, {"detail": "Custom id is too long"})})
    message = run(IDENTIFY, fake)["error"]
    assert "422" in message
    assert "Custom id is too long" in message


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
def test_s4_error_message_names_the_status(status: int) -> None:
    fake = scripted({"GET /users-by-id/u1/": Reply(status, {"detail": "nope"})})
    assert str(status) in run(IDENTIFY, fake)["error"]


def test_s4_user_key_lookup_found_updates_that_user() -> None:
    fake = scripted({"GET /users/search/?key=K9": ok({"id": 5, "user_key": "K9"})})
    message = identify(userId="u1", context={"externalId": [{"type": "userKey", "id": "K9"}]})
    assert final(run(message, fake)) == ("PUT", f"{BASE}/users/5/")


def test_s4_email_lookup_found_updates_that_user() -> None:
    fake = scripted({f"GET /users/search/?email={EMAIL}": ok({"id": 6})})
    message = identify(anonymousId="anon", traits={"email": EMAIL})
    result = run(message, fake)
    assert final(result) == ("PUT", f"{BASE}/users/6/")
    assert body(result) == {"custom_id": "anon", "email": EMAIL}


# --- phone search shapes ------------------------------------------------------------------

PHONE_IDENTIFY = identify(
    userId="u1", traits={"phone": "+48123"}, integrations={"user": {"lookup": "phone"}}
)
PHONE_SEARCH = "GET /users/search/?phone_number=+48123"


def test_s4_phone_search_one_result_is_that_user() -> None:
    fake = scripted({PHONE_SEARCH: ok({"count": 1, "results": [{"id": 12, "user_key": "k"}]})})
    result = run(PHONE_IDENTIFY, fake)
    assert final(result) == ("PUT", f"{BASE}/users/12/")
    assert fake.calls == [PHONE_SEARCH]


def test_s4_phone_search_no_result_is_not_found_error() -> None:
    fake = scripted({PHONE_SEARCH: ok({"count": 0, "results": []})})
    result = run(PHONE_IDENTIFY, fake)
    assert_failure(result, 400, NOT_FOUND_TAGS, "No user found for a given lookup field")


def test_s4_phone_search_several_results_is_error() -> None:
    users = [{"id": 1}, {"id": 2}]
    fake = scripted({PHONE_SEARCH: ok({"count": 2, "results": users})})
    result = run(PHONE_IDENTIFY, fake)
    assert_failure(result, 400, NOT_FOUND_TAGS, "Multiple users obtained for a given lookup field")


@pytest.mark.parametrize(
    "answer",
    [{"id": 12, "user_key": "k"}, {"results": None}, {"results": {"id": 1}}, {"count": 0}],
    ids=["single-object", "null-results", "object-results", "no-results-key"],
)
def test_s4_phone_search_without_results_list_is_not_understood(answer: Any) -> None:
    fake = scripted({PHONE_SEARCH: ok(answer)})
    result = run(PHONE_IDENTIFY, fake)
    assert_failure(result, 400, ABORTED)


def test_s4_phone_search_track_one_result() -> None:
    fake = scripted({PHONE_SEARCH: ok({"results": [{"id": 12}]})})
    message = track(
        userId="u1",
        event="E",
        traits={"phone": "+48123"},
        integrations={"user": {"lookup": "phone"}},
    )
    result = run(message, fake)
    assert final(result) == ("POST", f"{BASE}/events/")
    assert body(result)["user_id"] == 12


def test_s4_phone_search_track_no_result_is_lookup_error() -> None:
    fake = scripted({PHONE_SEARCH: ok({"results": []})})
    message = track(
        userId="u1",
        event="E",
        traits={"phone": "+48123"},
        integrations={"user": {"lookup": "phone"}},
    )
    assert_failure(
        run(message, fake), 400, NOT_FOUND_TAGS, "No user found for a given lookup field"
    )


@pytest.mark.parametrize(
    ("answer", "status", "stat_tags"),
    [
        pytest.param(Reply(500), 500, RETRYABLE, id="500"),
        pytest.param(Reply(401), 401, ABORTED, id="401"),
        pytest.param(Reply(429), 429, THROTTLED, id="429"),
        pytest.param(Raise(httpx.ReadTimeout), 500, RETRYABLE, id="timeout"),
    ],
)
def test_s4_phone_search_failures_are_classified(
    answer: Any, status: int, stat_tags: dict[str, str]
) -> None:
    fake = scripted({PHONE_SEARCH: answer})
    assert_failure(run(PHONE_IDENTIFY, fake), status, stat_tags)
    assert fake.calls == [PHONE_SEARCH]


def test_s4_phone_search_404_is_not_found_and_identify_creates() -> None:
    fake = scripted({PHONE_SEARCH: Reply(404)})
    assert final(run(PHONE_IDENTIFY, fake)) == ("POST", f"{BASE}/users/")
