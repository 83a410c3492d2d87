"""SPEC §5: identify: standard fields, gender/status, custom-map overlay, nulls, PUT/POST."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from helpers import (
    BASE,
    KEY,
    assert_bad_event,
    body,
    config,
    final,
    identify,
    ok,
    output,
    run,
    scripted,
)

FULL_TRAITS: dict[str, Any] = {
    "email": "ada@x.io",
    "phone": "+48123",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "tags": ["vip", "beta"],
    "address": {"city": "London"},
    "region": "Greater London",
    "country": "UK",
    "gender": "female",
    "status": "user",
    "googleUrl": "https://g/ada",
    "linkedinUrl": "https://l/ada",
    "twitterUrl": "https://t/ada",
    "facebookUrl": "https://f/ada",
    "avatar": "https://img/ada.png",
    "timezone": "Europe/London",
}

FULL_PAYLOAD: dict[str, Any] = {
    "custom_id": "u1",
    "email": "ada@x.io",
    "phone_number": "+48123",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "tags": ["vip", "beta"],
    "city": "London",
    "region": "Greater London",
    "country": "UK",
    "gender": 3,
    "status": 2,
    "google_url": "https://g/ada",
    "linkedin_url": "https://l/ada",
    "twitter_url": "https://t/ada",
    "facebook_url": "https://f/ada",
    "gravatar_url": "https://img/ada.png",
    "timezone": "Europe/London",
}


def test_s5_standard_fields_from_traits() -> None:
    traits = {k: v for k, v in FULL_TRAITS.items() if k != "address"}
    traits["city"] = "London"
    assert body(run(identify(userId="u1", traits=traits))) == FULL_PAYLOAD


def test_s5_standard_fields_from_context_traits() -> None:
    traits = {k: v for k, v in FULL_TRAITS.items() if k != "address"}
    traits["city"] = "London"
    result = run(identify(userId="u1", context={"traits": traits}))
    assert body(result) == FULL_PAYLOAD


def test_s5_address_object_trait_is_copied_as_custom_attribute() -> None:
    # `address` is not one of identify's standard source keys (§5.2), so it remains.
    result = body(run(identify(userId="u1", traits=FULL_TRAITS)))
    assert result == {**FULL_PAYLOAD, "address": {"city": "London"}}


def test_s5_not_found_posts_users() -> None:
    fake = scripted()
    result = run(identify(userId="u1", traits={"email": "ada@x.io"}), fake)
    assert final(result) == ("POST", f"{BASE}/users/")
    assert body(result) == {"custom_id": "u1", "email": "ada@x.io"}
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s5_found_puts_users_id() -> None:
    fake = scripted({"GET /users-by-id/u1/": ok({"id": 7, "custom_id": "u1"})})
    result = run(identify(userId="u1", traits={"email": "ada@x.io"}), fake)
    assert final(result) == ("PUT", f"{BASE}/users/7/")
    assert body(result) == {"custom_id": "u1", "email": "ada@x.io"}


def test_s5_missing_custom_id_is_error_before_any_request() -> None:
    fake = scripted()
    message = identify(traits={"email": "ada@x.io", "firstName": "Ada"})
    assert_bad_event(run(message, fake), 'Missing required value from "userId"', fake)


def test_s5_empty_user_ids_count_as_missing() -> None:
    fake = scripted()
    message = identify(userId="", anonymousId="", traits={"email": "e@x.io", "userId": ""})
    assert_bad_event(run(message, fake), 'Missing required value from "userId"', fake)


def test_s5_anonymous_id_is_the_last_custom_id_source() -> None:
    result = run(identify(anonymousId="anon-1", traits={"email": "e@x.io"}))
    assert body(result)["custom_id"] == "anon-1"


# --- gender / status ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("u", 1),
        ("U", 1),
        ("unknown", 1),
        ("Unknown", 1),
        ("UNKNOWN", 1),
        ("m", 2),
        ("M", 2),
        ("male", 2),
        ("Male", 2),
        ("MALE", 2),
        ("f", 3),
        ("F", 3),
        ("female", 3),
        ("Female", 3),
        ("FEMALE", 3),
        ("fEmAlE", 3),
    ],
)
def test_s5_gender_codes_case_insensitive(value: str, code: int) -> None:
    assert body(run(identify(userId="u1", traits={"gender": value})))["gender"] == code


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("v", 1),
        ("V", 1),
        ("visitor", 1),
        ("Visitor", 1),
        ("VISITOR", 1),
        ("u", 2),
        ("U", 2),
        ("user", 2),
        ("User", 2),
        ("USER", 2),
    ],
)
def test_s5_status_codes_case_insensitive(value: str, code: int) -> None:
    assert body(run(identify(userId="u1", traits={"status": value})))["status"] == code


@pytest.mark.parametrize("value", ["x", "other", "females", "mal", "non-binary"])
def test_s5_gender_unknown_value_is_dropped_with_warning(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = run(identify(userId="u1", traits={"gender": value, "email": "e@x.io"}))
    assert body(result) == {"custom_id": "u1", "email": "e@x.io"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "an unknown gender must be reported as a warning"
    assert any(value in r.getMessage() for r in warnings)
    assert all(KEY not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("value", ["visitors", "lead", "m", "customer"])
def test_s5_status_unknown_value_is_dropped_with_warning(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = run(identify(userId="u1", traits={"status": value}))
    assert body(result) == {"custom_id": "u1"}
    assert any(r.levelno == logging.WARNING and value in r.getMessage() for r in caplog.records)


def test_s5_unknown_gender_does_not_stop_the_lookup() -> None:
    fake = scripted({"GET /users-by-id/u1/": ok({"id": 3})})
    result = run(identify(userId="u1", traits={"gender": "x", "status": "y"}), fake)
    assert final(result) == ("PUT", f"{BASE}/users/3/")
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s5_no_warning_for_valid_identify(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        run(identify(userId="u1", traits={"gender": "m", "status": "v"}))
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# --- custom-map overlay -------------------------------------------------------------------

STANDARD_KEYS: dict[str, dict[str, Any]] = {
    "id": {},
    "userId": {},
    "email": {"email": "V"},
    "phone": {"phone_number": "V"},
    "firstName": {"first_name": "V"},
    "firstname": {"first_name": "V"},
    "first_name": {"first_name": "V"},
    "lastName": {"last_name": "V"},
    "lastname": {"last_name": "V"},
    "last_name": {"last_name": "V"},
    "tags": {"tags": "V"},
    "city": {"city": "V"},
    "region": {"region": "V"},
    "country": {"country": "V"},
    "gender": {},  # "V" is not a gender: left out
    "status": {"status": 1},  # "V" means visitor
    "googleUrl": {"google_url": "V"},
    "linkedinUrl": {"linkedin_url": "V"},
    "twitterUrl": {"twitter_url": "V"},
    "facebookUrl": {"facebook_url": "V"},
    "timezone": {"timezone": "V"},
    "avatar": {"gravatar_url": "V"},
    "avatarURL": {"gravatar_url": "V"},
    "avatar_URL": {"gravatar_url": "V"},
}


@pytest.mark.parametrize("where", ["traits", "context.traits"])
@pytest.mark.parametrize(("key", "expected"), list(STANDARD_KEYS.items()))
def test_s5_standard_source_keys_never_leak_as_custom_attributes(
    key: str, expected: dict[str, Any], where: str
) -> None:
    traits = {key: "V"}
    message = (
        identify(userId="u1", traits=traits)
        if where == "traits"
        else identify(userId="u1", context={"traits": traits})
    )
    assert body(run(message)) == {"custom_id": "u1", **expected}


def test_s5_remaining_traits_are_copied_under_their_own_names() -> None:
    traits = {"age": 31, "plan": "pro", "Nested": {"a": [1]}, "name": "Ada L."}
    assert body(run(identify(userId="u1", traits=traits))) == {"custom_id": "u1", **traits}


def test_s5_mapped_trait_goes_under_its_to_and_not_its_own_name() -> None:
    cfg = config(userAttributesMapping=[{"from": "plan", "to": "tier"}])
    result = run(identify(userId="u1", traits={"plan": "pro", "age": 3}), cfg=cfg)
    assert body(result) == {"custom_id": "u1", "tier": "pro", "age": 3}


def test_s5_mapping_a_standard_key_keeps_the_standard_field() -> None:
    cfg = config(userAttributesMapping=[{"from": "email", "to": "contact_email"}])
    result = run(identify(userId="u1", traits={"email": "e@x.io"}), cfg=cfg)
    assert body(result) == {"custom_id": "u1", "email": "e@x.io", "contact_email": "e@x.io"}


def test_s5_mapping_whose_from_is_absent_adds_nothing() -> None:
    cfg = config(userAttributesMapping=[{"from": "plan", "to": "tier"}])
    assert body(run(identify(userId="u1", traits={"age": 3}), cfg=cfg)) == {
        "custom_id": "u1",
        "age": 3,
    }


@pytest.mark.parametrize("value", [0, False, 0.0, [], {}], ids=["0", "false", "0.0", "[]", "{}"])
def test_s5_mapping_maps_falsy_but_present_values(value: Any) -> None:
    cfg = config(userAttributesMapping=[{"from": "score", "to": "lead_score"}])
    got = body(run(identify(userId="u1", traits={"score": value}), cfg=cfg))
    assert got == {"custom_id": "u1", "lead_score": value}
    assert type(got["lead_score"]) is type(value)


def test_s5_mapped_null_trait_is_neither_mapped_nor_sent() -> None:
    cfg = config(userAttributesMapping=[{"from": "plan", "to": "tier"}])
    result = run(identify(userId="u1", traits={"plan": None}), cfg=cfg)
    assert body(result) == {"custom_id": "u1"}


def test_s5_mapped_overrides_standard_field() -> None:
    cfg = config(userAttributesMapping=[{"from": "nickname", "to": "first_name"}])
    message = identify(userId="u1", traits={"firstName": "Ada", "nickname": "Addie"})
    assert body(run(message, cfg=cfg)) == {"custom_id": "u1", "first_name": "Addie"}


def test_s5_remaining_overrides_mapped_of_same_name() -> None:
    cfg = config(userAttributesMapping=[{"from": "plan", "to": "tier"}])
    message = identify(userId="u1", traits={"plan": "pro", "tier": "gold"})
    assert body(run(message, cfg=cfg)) == {"custom_id": "u1", "tier": "gold"}


def test_s5_remaining_overrides_mapped_even_from_context_traits() -> None:
    cfg = config(userAttributesMapping=[{"from": "plan", "to": "tier"}])
    message = identify(userId="u1", traits={"plan": "pro"}, context={"traits": {"tier": "gold"}})
    assert body(run(message, cfg=cfg)) == {"custom_id": "u1", "tier": "gold"}


def test_s5_remaining_overrides_standard_field() -> None:
    message = identify(userId="u1", traits={"phone": "+1", "phone_number": "+2"})
    assert body(run(message)) == {"custom_id": "u1", "phone_number": "+2"}


def test_s5_remaining_custom_id_trait_overrides_standard_custom_id() -> None:
    message = identify(userId="u1", traits={"custom_id": "c-9"})
    assert body(run(message)) == {"custom_id": "c-9"}


def test_s5_context_traits_win_in_overlay() -> None:
    message = identify(
        userId="u1", traits={"plan": "a", "age": 1}, context={"traits": {"plan": "b"}}
    )
    assert body(run(message)) == {"custom_id": "u1", "plan": "b", "age": 1}


def test_s5_context_traits_win_for_mapped_source() -> None:
    cfg = config(userAttributesMapping=[{"from": "plan", "to": "tier"}])
    message = identify(userId="u1", traits={"plan": "a"}, context={"traits": {"plan": "b"}})
    assert body(run(message, cfg=cfg)) == {"custom_id": "u1", "tier": "b"}


def test_s5_standard_fields_read_traits_first_even_though_overlay_prefers_context() -> None:
    message = identify(
        userId="u1", traits={"email": "t@x.io"}, context={"traits": {"email": "c@x.io"}}
    )
    assert body(run(message)) == {"custom_id": "u1", "email": "t@x.io"}


def test_s5_overlay_uses_context_traits_when_traits_absent() -> None:
    cfg = config(userAttributesMapping=[{"from": "plan", "to": "tier"}])
    message = identify(userId="u1", context={"traits": {"plan": "pro", "age": 5}})
    assert body(run(message, cfg=cfg)) == {"custom_id": "u1", "tier": "pro", "age": 5}


def test_s5_several_mappings_apply_together() -> None:
    cfg = config(
        userAttributesMapping=[
            {"from": "plan", "to": "tier"},
            {"from": "score", "to": "lead_score"},
            {"from": "firstName", "to": "given"},
        ]
    )
    message = identify(userId="u1", traits={"plan": "p", "score": 9, "firstName": "Ada"})
    assert body(run(message, cfg=cfg)) == {
        "custom_id": "u1",
        "first_name": "Ada",
        "tier": "p",
        "lead_score": 9,
        "given": "Ada",
    }


# --- nulls --------------------------------------------------------------------------------


def test_s5_top_level_nulls_are_dropped() -> None:
    message = identify(userId="u1", traits={"age": None, "email": None, "plan": "p"})
    assert body(run(message)) == {"custom_id": "u1", "plan": "p"}


def test_s5_nested_nulls_are_kept() -> None:
    message = identify(userId="u1", traits={"prefs": {"a": None}})
    assert body(run(message)) == {"custom_id": "u1", "prefs": {"a": None}}


def test_s5_empty_string_custom_trait_is_sent_as_is() -> None:
    # Only nulls are dropped from bodies (§5.3, §9); an empty string is a value.
    body_ = body(run(identify(userId="u1", traits={"nickname": ""})))
    assert body_ == {"custom_id": "u1", "nickname": ""}


def test_s5_output_request_is_a_json_rest_request() -> None:
    out = output(run(identify(userId="u1")))
    assert out["body"]["JSON_ARRAY"] == {}
    assert out["body"]["FORM"] == {}
    assert out["params"] == {}
