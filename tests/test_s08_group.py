"""SPEC §8: group: checks, the four steps, answer classification, the company payload."""

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
    assert_bad_event,
    assert_failure,
    body,
    company_write,
    config,
    final,
    group,
    group_fake,
    ok,
    run,
    scripted,
    tags,
)

from pipeline.testing import Raise, Reply

USER_STEP = "GET /users-by-id/u1/"
COMPANY_STEP = "GET /companies-by-id/g1/"
BASE_COMPANY = {"user_custom_id": "u1", "custom_id": "g1", "name": "Acme"}


def acme(**traits: Any) -> dict[str, Any]:
    return group(userId="u1", groupId="g1", traits={"name": "Acme", **traits})


# --- steps --------------------------------------------------------------------------------


def test_s8_new_company_is_created_then_member_added() -> None:
    fake = group_fake()
    result = run(acme(), fake)
    assert fake.calls == [USER_STEP, COMPANY_STEP, "POST /companies/"]
    assert fake.requests[2].body == BASE_COMPANY
    assert final(result) == ("POST", f"{BASE}/companies/21/add_member/")
    assert body(result) == {"user_id": 7, "user_custom_id": "u1"}


def test_s8_existing_company_is_updated_then_member_added() -> None:
    fake = group_fake(
        company=ok({"id": 33, "custom_id": "g1"}), write=Reply(200, {"id": 33, "name": "Acme"})
    )
    result = run(acme(), fake)
    assert fake.calls == [USER_STEP, COMPANY_STEP, "PUT /companies/33/"]
    assert fake.requests[2].body == BASE_COMPANY
    assert final(result) == ("POST", f"{BASE}/companies/33/add_member/")


def test_s8_add_member_uses_the_id_from_the_write_answer() -> None:
    fake = group_fake(company=ok({"id": 33}), write=Reply(200, {"id": 99}))
    result = run(acme(), fake)
    assert fake.calls[2] == "PUT /companies/33/"
    assert final(result) == ("POST", f"{BASE}/companies/99/add_member/")


@pytest.mark.parametrize("status", [200, 201, 202])
def test_s8_any_2xx_object_with_id_is_a_successful_write(status: int) -> None:
    fake = group_fake(write=Reply(status, {"id": 5}))
    assert final(run(acme(), fake)) == ("POST", f"{BASE}/companies/5/add_member/")


def test_s8_add_member_uses_the_found_users_id_and_custom_id() -> None:
    fake = group_fake(user=ok({"id": 41, "custom_id": "cust-41", "user_key": "k"}))
    assert body(run(acme(), fake)) == {"user_id": 41, "user_custom_id": "cust-41"}


@pytest.mark.parametrize("user", [{"id": 41}, {"id": 41, "custom_id": None}])
def test_s8_add_member_drops_null_fields(user: dict[str, Any]) -> None:
    assert body(run(acme(), group_fake(user=ok(user)))) == {"user_id": 41}


def test_s8_user_not_found_is_error_and_stops() -> None:
    fake = group_fake(user=Reply(404, {"detail": "Not found."}))
    result = run(acme(), fake)
    assert_failure(result, 400, NOT_FOUND_TAGS, "No user found with given userId")
    assert fake.calls == [USER_STEP]


STEP_FAILURES: list[Any] = [
    pytest.param(Reply(401), 401, tags("network", "aborted"), id="401"),
    pytest.param(Reply(403), 403, tags("network", "aborted"), id="403"),
    pytest.param(Reply(429, headers={"Retry-After": "3"}), 429, THROTTLED, id="429"),
    pytest.param(Reply(500), 500, RETRYABLE, id="500"),
    pytest.param(Reply(503), 503, RETRYABLE, id="503"),
    pytest.param(Raise(httpx.ConnectError), 500, RETRYABLE, id="connect-error"),
    pytest.param(Raise(httpx.ReadTimeout), 500, RETRYABLE, id="timeout"),
    pytest.param(Reply(400, {"detail": "bad"}), 400, ABORTED, id="400"),
    pytest.param(Reply(302, headers={"Location": "/x/"}), 400, ABORTED, id="302"),
    pytest.param(Reply(200, text="<html/>"), 400, ABORTED, id="200-not-json"),
]


@pytest.mark.parametrize(("answer", "status", "stat_tags"), STEP_FAILURES)
def test_s8_user_step_answers_are_classified(
    answer: Any, status: int, stat_tags: dict[str, str]
) -> None:
    fake = group_fake(user=answer)
    assert_failure(run(acme(), fake), status, stat_tags)
    assert fake.calls == [USER_STEP]


@pytest.mark.parametrize(("answer", "status", "stat_tags"), STEP_FAILURES)
def test_s8_company_step_answers_are_classified(
    answer: Any, status: int, stat_tags: dict[str, str]
) -> None:
    fake = group_fake(company=answer)
    assert_failure(run(acme(), fake), status, stat_tags)
    assert fake.calls == [USER_STEP, COMPANY_STEP]


WRITE_FAILURES: list[Any] = [
    *STEP_FAILURES,
    pytest.param(Reply(404), 400, ABORTED, id="404"),
    pytest.param(Reply(422, {"errors": {"name": ["required"]}}), 400, ABORTED, id="422"),
    pytest.param(Reply(200, {}), 400, ABORTED, id="200-no-id"),
    pytest.param(Reply(201, {"id": None}), 400, ABORTED, id="201-null-id"),
    pytest.param(Reply(201, [{"id": 1}]), 400, ABORTED, id="201-list"),
    pytest.param(Reply(204), 400, ABORTED, id="204-empty"),
]


@pytest.mark.parametrize(("answer", "status", "stat_tags"), WRITE_FAILURES)
def test_s8_failed_company_create_stops_the_event(
    answer: Any, status: int, stat_tags: dict[str, str]
) -> None:
    fake = group_fake(write=answer)
    result = run(acme(), fake)
    assert_failure(result, status, stat_tags)
    assert fake.calls == [USER_STEP, COMPANY_STEP, "POST /companies/"]


@pytest.mark.parametrize(
    ("answer", "status"),
    [(Reply(500), 500), (Reply(200, {"name": "Acme"}), 400), (Reply(400), 400)],
    ids=["500", "no-id", "400"],
)
def test_s8_failed_company_update_stops_the_event(answer: Any, status: int) -> None:
    fake = group_fake(company=ok({"id": 33}), write=answer)
    result = run(acme(), fake)
    assert result["statusCode"] == status
    assert "output" not in result
    assert fake.calls == [USER_STEP, COMPANY_STEP, "PUT /companies/33/"]


# --- checks before any request ------------------------------------------------------------


@pytest.mark.parametrize(
    "traits",
    ["absent", {}, {"name": ""}, {"name": None}, {"title": "Acme"}],
    ids=["no-traits", "empty-traits", "empty-name", "null-name", "no-name"],
)
def test_s8_missing_name_is_error_before_any_request(traits: Any) -> None:
    message = group(userId="u1", groupId="g1")
    if traits != "absent":
        message["traits"] = traits
    fake = group_fake()
    assert_bad_event(run(message, fake), "Parameter name is required", fake)


def test_s8_name_read_from_first_traits_object_only() -> None:
    # `traits` is present (an object), so context.traits is not consulted for the name.
    message = group(userId="u1", groupId="g1", traits={}, context={"traits": {"name": "Acme"}})
    fake = group_fake()
    assert_bad_event(run(message, fake), "Parameter name is required", fake)


@pytest.mark.parametrize("group_id", ["absent", "", None])
def test_s8_missing_group_id_is_error_before_any_request(group_id: Any) -> None:
    message = group(userId="u1", traits={"name": "Acme"})
    if group_id != "absent":
        message["groupId"] = group_id
    fake = group_fake()
    assert_bad_event(run(message, fake), "Parameter groupId is required", fake)


def test_s8_missing_user_id_is_error_before_any_request() -> None:
    fake = group_fake()
    message = group(groupId="g1", traits={"name": "Acme", "email": "e@x.io"})
    assert_bad_event(run(message, fake), 'Missing required value from "userId"', fake)


def test_s8_group_id_from_traits() -> None:
    message = group(userId="u1", traits={"name": "Acme", "groupId": "g1"})
    fake = group_fake()
    run(message, fake)
    assert fake.calls == [USER_STEP, COMPANY_STEP, "POST /companies/"]
    assert fake.requests[2].body == BASE_COMPANY


# --- company payload ----------------------------------------------------------------------


def test_s8_full_company_payload() -> None:
    cfg = config(companyAttributesMapping=[{"from": "industry", "to": "sector"}])
    message = acme(
        email="hi@acme.io",
        address={
            "street": "6th St",
            "city": "San Francisco",
            "state": "CA",
            "postalCode": "94103",
            "country": "USA",
        },
        region="West",
        country="US",
        description="Rockets",
        phone="+1555",
        size=50,
        tags=["b2b"],
        industry="tech",
        plan="enterprise",
    )
    _, _, written = company_write(message, cfg)
    assert written == {
        **BASE_COMPANY,
        "email": "hi@acme.io",
        "address": "6th St, San Francisco, CA, 94103, USA",
        "city": "San Francisco",
        "region": "West",
        "country": "US",
        "description": "Rockets",
        "phone_numbers": "+1555",
        "postal_code": "94103",
        "size": 50,
        "tags": ["b2b"],
        "sector": "tech",
        "plan": "enterprise",
    }


COMPANY_STANDARD: dict[str, dict[str, Any]] = {
    "id": {},
    "userId": {},
    "groupId": {},
    "groupname": {},
    "email": {"email": "V"},
    "address": {"address": "V"},
    "city": {"city": "V"},
    "region": {"region": "V"},
    "country": {"country": "V"},
    "description": {"description": "V"},
    "phone": {"phone_numbers": "V"},
    "zip": {"postal_code": "V"},
    "zipcode": {"postal_code": "V"},
    "postalcode": {"postal_code": "V"},
    "size": {"size": "V"},
    "tags": {"tags": "V"},
}


@pytest.mark.parametrize(("key", "expected"), list(COMPANY_STANDARD.items()))
def test_s8_company_standard_source_keys_never_leak(key: str, expected: dict[str, Any]) -> None:
    _, _, written = company_write(acme(**{key: "V"}))
    assert written == {**BASE_COMPANY, **expected}


def test_s8_other_group_traits_are_copied() -> None:
    _, _, written = company_write(acme(employees=12, zip_code="Z", founded=None))
    assert written == {**BASE_COMPANY, "employees": 12, "zip_code": "Z", "postal_code": "Z"}


def test_s8_remaining_trait_overrides_standard_field() -> None:
    _, _, written = company_write(acme(phone="+1", phone_numbers=["+2", "+3"]))
    assert written["phone_numbers"] == ["+2", "+3"]


def test_s8_mapped_overrides_standard_and_remaining_overrides_mapped() -> None:
    cfg = config(
        companyAttributesMapping=[
            {"from": "legalName", "to": "name"},
            {"from": "industry", "to": "sector"},
        ]
    )
    _, _, written = company_write(acme(legalName="Acme Inc.", industry="x", sector="y"), cfg)
    assert written == {**BASE_COMPANY, "name": "Acme", "sector": "y"}
    _, _, written = company_write(
        group(userId="u1", groupId="g1", traits={"name": "Acme", "legalName": "Acme Inc."}),
        config(companyAttributesMapping=[{"from": "legalName", "to": "custom_id"}]),
    )
    assert written["custom_id"] == "Acme Inc."


@pytest.mark.parametrize("value", [0, False], ids=["zero", "false"])
def test_s8_company_mapping_maps_zero_and_false(value: Any) -> None:
    cfg = config(companyAttributesMapping=[{"from": "public", "to": "is_public"}])
    _, _, written = company_write(acme(public=value), cfg)
    assert written == {**BASE_COMPANY, "is_public": value}
    assert type(written["is_public"]) is type(value)


def test_s8_company_mapping_over_context_traits_when_traits_absent() -> None:
    cfg = config(companyAttributesMapping=[{"from": "industry", "to": "sector"}])
    message = group(
        userId="u1", groupId="g1", context={"traits": {"name": "Acme", "industry": "t"}}
    )
    _, _, written = company_write(message, cfg)
    assert written == {**BASE_COMPANY, "sector": "t"}


def test_s8_identify_mapping_does_not_apply_to_companies() -> None:
    cfg = config(userAttributesMapping=[{"from": "industry", "to": "sector"}])
    _, _, written = company_write(acme(industry="t"), cfg)
    assert written == {**BASE_COMPANY, "industry": "t"}


@pytest.mark.parametrize(
    ("address", "joined"),
    [
        (
            {"street": "6th St", "city": "San Francisco", "state": "CA", "zip": 94103},
            "6th St, San Francisco, CA, 94103",
        ),
        ({"b": "2nd", "a": "1st"}, "2nd, 1st"),
        ({"street": "Main", "line2": "", "zip": None, "geo": {"lat": 1}, "c": "X"}, "Main, X"),
        ({"n": 10, "f": 2.5, "s": "S"}, "10, 2.5, S"),
        ({"vip": True, "s": "S"}, "S"),
        ({"list": ["a", "b"], "s": "S"}, "S"),
    ],
    ids=["ordered", "insertion-order", "skips-empty-null-object", "numbers", "bool", "list"],
)
def test_s8_address_object_is_joined(address: dict[str, Any], joined: str) -> None:
    _, _, written = company_write(acme(address=address))
    assert written["address"] == joined


def test_s8_address_string_is_sent_as_is() -> None:
    _, _, written = company_write(acme(address="1 Main St, Springfield"))
    assert written["address"] == "1 Main St, Springfield"


def test_s8_address_from_context_traits_is_joined() -> None:
    message = acme()
    message["context"] = {"traits": {"address": {"street": "Main", "city": "Oslo"}}}
    _, _, written = company_write(message)
    assert written["address"] == "Main, Oslo"
    assert written["city"] == "Oslo"


def test_s8_description_comes_from_traits_description() -> None:
    _, _, written = company_write(acme(description="We build rockets"))
    assert written["description"] == "We build rockets"


def test_s8_description_is_only_read_from_traits() -> None:
    message = acme()
    message["context"] = {"traits": {"description": "elsewhere"}}
    _, _, written = company_write(message)
    assert "description" not in written


def test_s8_name_from_context_traits_when_traits_absent() -> None:
    message = group(userId="u1", groupId="g1", context={"traits": {"name": "Ctx Co"}})
    _, _, written = company_write(message)
    assert written == {**BASE_COMPANY, "name": "Ctx Co"}


def test_s8_city_from_plain_city_trait_when_no_address_city() -> None:
    _, _, written = company_write(acme(city="Oslo", address={"street": "Main"}))
    assert written["city"] == "Oslo"
    _, _, written = company_write(acme(city="Oslo", address={"city": "Bergen"}))
    assert written["city"] == "Bergen"


def test_s8_company_top_level_nulls_are_dropped() -> None:
    _, _, written = company_write(acme(size=None, region=None, website=None, address={}))
    assert None not in written.values()
    assert {"size", "region", "website"}.isdisjoint(written)


def test_s8_company_write_is_a_json_body_with_headers() -> None:
    fake = group_fake()
    run(acme(), fake)
    write = fake.requests[2]
    assert write.headers["content-type"] == "application/json"
    assert isinstance(write.body, dict)


def test_s8_group_lookup_steps_make_no_user_search() -> None:
    fake = scripted(
        {
            "GET /users-by-id/u1/": ok(),
            "POST /companies/": Reply(201, {"id": 2}),
        }
    )
    message = group(
        userId="u1",
        groupId="g1",
        traits={"name": "Acme", "email": "e@x.io"},
        context={"externalId": [{"type": "userKey", "id": "K"}]},
    )
    run(message, fake)
    assert fake.calls == [USER_STEP, COMPANY_STEP, "POST /companies/"]
