"""SPEC §6: track: event name, data, timestamps in seconds, event mapping, lookup outcome."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from helpers import (
    BASE,
    NOT_FOUND_TAGS,
    assert_bad_event,
    assert_failure,
    body,
    config,
    final,
    ok,
    run,
    scripted,
    track,
    user_found,
)

TRACK_NOT_FOUND = (
    "No user found with given lookup field, Track event cannot be completed if there is no "
    "valid user"
)


def sent(message: dict[str, Any], cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    return body(run(message, user_found(), cfg))


@pytest.mark.parametrize("event", ["absent", None, ""])
def test_s6_missing_event_is_error_before_any_request(event: Any) -> None:
    message = track(userId="u1", properties={"a": 1})
    if event != "absent":
        message["event"] = event
    fake = scripted()
    assert_bad_event(run(message, fake), "Parameter event is required", fake)


def test_s6_found_user_posts_event() -> None:
    fake = user_found({"id": 77, "user_key": "k", "custom_id": "u1"})
    message = track(
        userId="u1", event="Order Completed", properties={"value": 42, "currency": "EUR"}
    )
    result = run(message, fake)
    assert final(result) == ("POST", f"{BASE}/events/")
    assert body(result) == {
        "name": "Order Completed",
        "data": {"value": 42, "currency": "EUR"},
        "user_id": 77,
    }
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s6_no_properties_means_no_data_key() -> None:
    assert sent(track(userId="u1", event="E")) == {"name": "E", "user_id": 7}


def test_s6_null_properties_means_no_data_key() -> None:
    assert sent(track(userId="u1", event="E", properties=None)) == {"name": "E", "user_id": 7}


def test_s6_empty_properties_object_is_sent_as_empty_data() -> None:
    assert sent(track(userId="u1", event="E", properties={})) == {
        "name": "E",
        "data": {},
        "user_id": 7,
    }


def test_s6_data_is_properties_as_found() -> None:
    properties = {"items": [{"sku": "a", "qty": 2}], "note": None, "ok": False, "n": 0}
    assert sent(track(userId="u1", event="E", properties=properties))["data"] == properties


def test_s6_not_found_is_track_error() -> None:
    fake = scripted()
    result = run(track(userId="u1", event="E"), fake)
    assert_failure(result, 400, NOT_FOUND_TAGS, TRACK_NOT_FOUND)
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s6_missing_user_id_list_is_error_before_any_request() -> None:
    fake = scripted()
    message = track(event="E", traits={"email": "e@x.io"})
    assert_bad_event(run(message, fake), 'Missing required value from "userId"', fake)


def test_s6_lookup_by_email_when_no_top_level_user_id() -> None:
    fake = scripted({"GET /users/search/?email=e@x.io": ok({"id": 5})})
    message = track(anonymousId="anon", event="E", context={"traits": {"email": "e@x.io"}})
    result = run(message, fake)
    assert body(result) == {"name": "E", "user_id": 5}
    assert fake.calls == ["GET /users/search/?email=e@x.io"]


# --- timestamps ---------------------------------------------------------------------------

SECONDS = 1609769585  # 2021-01-04T14:13:05Z


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        pytest.param("2021-01-04T14:13:05Z", SECONDS, id="iso-z"),
        pytest.param("2021-01-04T14:13:05.999Z", SECONDS, id="iso-fraction-rounds-down"),
        pytest.param("2021-01-04T14:13:05+00:00", SECONDS, id="iso-utc-offset"),
        pytest.param("2021-01-04T14:13:05.801+05:30", SECONDS - 19800, id="iso-plus-offset"),
        pytest.param("2021-01-04T14:13:05-02:00", SECONDS + 7200, id="iso-minus-offset"),
        pytest.param("2021-01-04T14:13:05", SECONDS, id="iso-no-offset-is-utc"),
        pytest.param("2021-01-04T14:13:05.5", SECONDS, id="iso-no-offset-fraction"),
        pytest.param(SECONDS, SECONDS, id="epoch-seconds"),
        pytest.param(SECONDS * 1000 + 801, SECONDS, id="epoch-ms"),
        pytest.param(str(SECONDS), SECONDS, id="digit-string-seconds"),
        pytest.param(str(SECONDS * 1000 + 999), SECONDS, id="digit-string-ms"),
        pytest.param(99_999_999_999, 99_999_999_999, id="just-below-1e11-is-seconds"),
        pytest.param(10**11, 10**8, id="1e11-is-ms"),
        pytest.param(str(10**11), 10**8, id="1e11-digit-string-is-ms"),
        pytest.param(SECONDS + 0.9, SECONDS, id="float-seconds-round-down"),
        pytest.param(SECONDS * 1000 + 801.5, SECONDS, id="float-ms"),
        pytest.param(0, 0, id="zero"),
    ],
)
def test_s6_timestamp_becomes_whole_seconds(stamp: Any, seconds: int) -> None:
    got = sent(track(userId="u1", event="E", timestamp=stamp))["timestamp"]
    assert got == seconds
    assert type(got) is int


def test_s6_original_timestamp_used_when_no_timestamp() -> None:
    message = track(userId="u1", event="E", originalTimestamp="2021-01-04T14:13:05Z")
    assert sent(message)["timestamp"] == SECONDS


def test_s6_no_timestamp_at_all_is_left_out_silently(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert sent(track(userId="u1", event="E")) == {"name": "E", "user_id": 7}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    "stamp", ["soon", "2021-13-45T00:00:00Z", "12abc", "yesterday at noon", "2021-01-04T25:00:00"]
)
def test_s6_unparseable_timestamp_is_left_out_with_warning(
    stamp: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = sent(track(userId="u1", event="E", timestamp=stamp, properties={"a": 1}))
    assert result == {"name": "E", "data": {"a": 1}, "user_id": 7}
    assert any(r.levelno == logging.WARNING and stamp in r.getMessage() for r in caplog.records)


# --- event mapping ------------------------------------------------------------------------


def _rule(
    rs: str = "Order Completed", user: str = "purchase", props: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {"rsEventName": rs, "userEventName": user, "eventProperties": props or []}


def test_s6_exactly_one_matching_entry_renames_event_and_properties() -> None:
    cfg = config(
        userEvents=[
            _rule(props=[{"from": "value", "to": "amount"}, {"from": "sku", "to": "product"}]),
            _rule(rs="Other", user="other"),
        ]
    )
    message = track(
        userId="u1",
        event="Order Completed",
        properties={"value": 42, "sku": "X", "currency": "EUR"},
    )
    assert sent(message, cfg) == {
        "name": "purchase",
        "data": {"amount": 42, "product": "X", "currency": "EUR"},
        "user_id": 7,
    }


def test_s6_mapped_event_without_properties_has_no_data() -> None:
    cfg = config(userEvents=[_rule(props=[{"from": "value", "to": "amount"}])])
    message = track(userId="u1", event="Order Completed")
    assert sent(message, cfg) == {"name": "purchase", "user_id": 7}


def test_s6_two_matching_entries_means_no_mapping() -> None:
    cfg = config(
        userEvents=[
            _rule(user="a", props=[{"from": "value", "to": "amount"}]),
            _rule(user="b", props=[{"from": "value", "to": "total"}]),
        ]
    )
    message = track(userId="u1", event="Order Completed", properties={"value": 1})
    assert sent(message, cfg) == {"name": "Order Completed", "data": {"value": 1}, "user_id": 7}


def test_s6_no_matching_entry_means_no_mapping() -> None:
    cfg = config(userEvents=[_rule(rs="Signed Up", user="signup")])
    message = track(userId="u1", event="Order Completed", properties={"value": 1})
    assert sent(message, cfg) == {"name": "Order Completed", "data": {"value": 1}, "user_id": 7}


def test_s6_event_name_match_is_case_sensitive() -> None:
    cfg = config(userEvents=[_rule(rs="order completed")])
    message = track(userId="u1", event="Order Completed")
    assert sent(message, cfg)["name"] == "Order Completed"


def test_s6_remaining_property_overrides_mapped_of_same_name() -> None:
    cfg = config(userEvents=[_rule(props=[{"from": "value", "to": "amount"}])])
    message = track(userId="u1", event="Order Completed", properties={"value": 1, "amount": 2})
    assert sent(message, cfg)["data"] == {"amount": 2}


@pytest.mark.parametrize("value", [0, False], ids=["zero", "false"])
def test_s6_property_mapping_maps_zero_and_false(value: Any) -> None:
    cfg = config(userEvents=[_rule(props=[{"from": "value", "to": "amount"}])])
    message = track(userId="u1", event="Order Completed", properties={"value": value})
    data = sent(message, cfg)["data"]
    assert data == {"amount": value}
    assert type(data["amount"]) is type(value)


def test_s6_property_mapping_has_no_standard_keys() -> None:
    # Keys that are standard in identify (email, phone, ...) are ordinary properties here.
    cfg = config(userEvents=[_rule()])
    properties = {"email": "e@x.io", "phone": "+1", "id": 3, "userId": "u1", "tags": ["a"]}
    message = track(userId="u1", event="Order Completed", properties=properties)
    assert sent(message, cfg)["data"] == properties


def test_s6_property_mapping_absent_from_adds_nothing() -> None:
    cfg = config(userEvents=[_rule(props=[{"from": "value", "to": "amount"}])])
    message = track(userId="u1", event="Order Completed", properties={"sku": "X"})
    assert sent(message, cfg)["data"] == {"sku": "X"}


def test_s6_property_mapping_with_empty_properties_object() -> None:
    cfg = config(userEvents=[_rule(props=[{"from": "value", "to": "amount"}])])
    message = track(userId="u1", event="Order Completed", properties={})
    assert sent(message, cfg) == {"name": "purchase", "data": {}, "user_id": 7}


def test_s6_mapping_keeps_timestamp_and_user_id() -> None:
    cfg = config(userEvents=[_rule()])
    message = track(userId="u1", event="Order Completed", timestamp=SECONDS)
    assert sent(message, cfg) == {"name": "purchase", "timestamp": SECONDS, "user_id": 7}
