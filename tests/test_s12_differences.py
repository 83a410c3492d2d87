"""SPEC §12: every deliberate difference from the reference implementation."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from helpers import (
    BASE,
    CONFIGURATION,
    HOST,
    INSTRUMENTATION,
    RETRYABLE,
    assert_bad_config,
    assert_bad_event,
    assert_failure,
    body,
    company_write,
    config,
    final,
    group,
    group_fake,
    identify,
    ok,
    page,
    run,
    scripted,
    track,
    user_found,
)

from pipeline import process_router
from pipeline.testing import Raise, Reply

# 1. Lookup answers other than 200/404 are classified, never read as "not found".


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Reply(500), 500),
        (Reply(401), 401),
        (Reply(403), 403),
        (Reply(429), 429),
        (Raise(httpx.ConnectTimeout), 500),
    ],
    ids=["500", "401", "403", "429", "timeout"],
)
def test_s12_1_failed_lookup_never_creates_a_duplicate_user(answer: Any, status: int) -> None:
    fake = scripted({"GET /users-by-id/u1/": answer, "POST /users/": Reply(201, {"id": 1})})
    result = run(identify(userId="u1", traits={"email": "e@x.io"}), fake)
    assert result["statusCode"] == status
    assert "output" not in result
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s12_1_failed_lookup_on_track_is_not_user_not_found() -> None:
    fake = scripted({"GET /users-by-id/u1/": Reply(500)})
    result = run(track(userId="u1", event="E"), fake)
    assert_failure(result, 500, RETRYABLE)


# 2. Company writes that fail stop the event (no add_member on companies/undefined/).


@pytest.mark.parametrize(
    "write",
    [Reply(500), Reply(400, {"detail": "bad"}), Reply(201, {"name": "no id"})],
    ids=["500", "400", "no-id"],
)
def test_s12_2_failed_company_write_stops_before_add_member(write: Reply) -> None:
    fake = group_fake(write=write)
    result = run(group(userId="u1", groupId="g1", traits={"name": "A"}), fake)
    assert "output" not in result
    assert result["statusCode"] in (400, 500)
    assert "undefined" not in result["error"]
    assert not any("add_member" in call for call in fake.calls)


# 3. Identifiers and query values are percent-encoded.


def test_s12_3_email_with_plus_reaches_the_right_user() -> None:
    fake = scripted({"GET /users/search/?email=ada+news@x.io": ok({"id": 4})})
    result = run(identify(anonymousId="anon", traits={"email": "ada+news@x.io"}), fake)
    assert final(result) == ("PUT", f"{BASE}/users/4/")
    assert fake.requests[0].query == (("email", "ada+news@x.io"),)


def test_s12_3_custom_id_with_slash_stays_one_segment() -> None:
    fake = scripted({"GET /users-by-id/*": ok({"id": 4})})
    run(identify(userId="team/42"), fake)
    assert fake.requests[0].segments == ("users-by-id", "team/42")
    assert "%2F" in fake.requests[0].raw_path.upper()


# 4. appSubdomain is validated.


@pytest.mark.parametrize(
    "subdomain", ["evil.com/", "evil.com#", "x.evil.com", "attacker@evil", "a b"]
)
def test_s12_4_subdomain_cannot_point_elsewhere(subdomain: str) -> None:
    fake = scripted()
    assert_bad_config(run(identify(userId="u1"), fake, config(appSubdomain=subdomain)), fake)


def test_s12_4_friendly_subdomain_is_normalised() -> None:
    fake = scripted()
    run(identify(userId="u1"), fake, config(appSubdomain="https://ACME.user.com/"))
    assert fake.requests[0].host == HOST


# 5. Missing apiKey/appSubdomain and mapping lists.


def test_s12_5_missing_settings_are_clean_configuration_errors() -> None:
    fake = scripted()
    for cfg in ({"appSubdomain": "acme"}, {"apiKey": "k" * 64}, {}):
        result = run(identify(userId="u1"), fake, cfg)
        assert_failure(result, 400, CONFIGURATION)
    assert fake.requests == []


def test_s12_5_missing_mapping_lists_are_empty() -> None:
    cfg = {"apiKey": "k" * 64, "appSubdomain": "acme"}
    assert body(run(identify(userId="u1", traits={"age": 3}), scripted(), cfg)) == {
        "custom_id": "u1",
        "age": 3,
    }
    assert body(run(track(userId="u1", event="E"), user_found(), cfg)) == {
        "name": "E",
        "user_id": 7,
    }
    assert (
        company_write(group(userId="u1", groupId="g", traits={"name": "A"}), cfg)[0]["statusCode"]
        == 200
    )


# 6. Gender/status case-insensitive; unknown values drop one field with a warning.


def test_s12_6_gender_and_status_case_insensitive() -> None:
    result = body(run(identify(userId="u1", traits={"gender": "FEMALE", "status": "Visitor"})))
    assert result == {"custom_id": "u1", "gender": 3, "status": 1}


def test_s12_6_unknown_gender_drops_only_that_field(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = run(identify(userId="u1", traits={"gender": "dunno", "firstName": "Ada"}))
    assert body(result) == {"custom_id": "u1", "first_name": "Ada"}
    assert any(r.levelno == logging.WARNING for r in caplog.records)


# 7. traits.description reaches the company's description.


def test_s12_7_description_reaches_the_company() -> None:
    written = company_write(
        group(userId="u1", groupId="g", traits={"name": "A", "description": "D"})
    )[2]
    assert written["description"] == "D"


# 8. traits.city / context.traits.city are used when there is no address.city.


def test_s12_8_plain_city_is_used_for_identify() -> None:
    assert body(run(identify(userId="u1", traits={"city": "Oslo"})))["city"] == "Oslo"
    assert body(run(identify(userId="u1", context={"traits": {"city": "Rome"}})))["city"] == "Rome"


def test_s12_8_address_city_still_wins() -> None:
    message = identify(
        userId="u1", traits={"city": "Oslo"}, context={"traits": {"address": {"city": "Rome"}}}
    )
    assert body(run(message))["city"] == "Rome"


def test_s12_8_plain_city_is_used_for_group() -> None:
    message = group(
        userId="u1", groupId="g", traits={"name": "A"}, context={"traits": {"city": "Rome"}}
    )
    assert company_write(message)[2]["city"] == "Rome"


# 9. Company address objects are joined with ", ".


def test_s12_9_address_object_joined_with_comma_space() -> None:
    address = {
        "street": "6th St",
        "city": "San Francisco",
        "state": "CA",
        "zip": "94103",
        "country": "USA",
    }
    written = company_write(
        group(userId="u1", groupId="g", traits={"name": "A", "address": address})
    )[2]
    assert written["address"] == "6th St, San Francisco, CA, 94103, USA"


# 10. Custom mappings map 0 and false too.


@pytest.mark.parametrize("value", [0, False], ids=["zero", "false"])
def test_s12_10_mappings_map_zero_and_false(value: Any) -> None:
    cfg = config(
        userAttributesMapping=[{"from": "n", "to": "user_n"}],
        companyAttributesMapping=[{"from": "n", "to": "company_n"}],
        userEvents=[
            {
                "rsEventName": "E",
                "userEventName": "e",
                "eventProperties": [{"from": "n", "to": "event_n"}],
            }
        ],
    )
    identified = body(run(identify(userId="u1", traits={"n": value}), scripted(), cfg))
    assert identified == {"custom_id": "u1", "user_n": value}
    tracked = body(run(track(userId="u1", event="E", properties={"n": value}), user_found(), cfg))
    assert tracked["data"] == {"event_n": value}
    written = company_write(group(userId="u1", groupId="g", traits={"name": "A", "n": value}), cfg)[
        2
    ]
    assert written["company_n"] is value


# 11. No state leaks between events or destinations.


def test_s12_11_mapped_attribute_of_one_event_does_not_exclude_it_in_the_next() -> None:
    mapped = config(userAttributesMapping=[{"from": "plan", "to": "tier"}])
    assert body(run(identify(userId="u1", traits={"plan": "p"}), scripted(), mapped)) == {
        "custom_id": "u1",
        "tier": "p",
    }
    assert body(run(identify(userId="u2", traits={"plan": "p"}), scripted(), config())) == {
        "custom_id": "u2",
        "plan": "p",
    }


def test_s12_11_no_leak_between_destinations_in_one_batch() -> None:
    a = {"Config": config(userAttributesMapping=[{"from": "plan", "to": "tier"}])}
    b = {
        "Config": config(
            appSubdomain="beta", companyAttributesMapping=[{"from": "plan", "to": "x"}]
        )
    }
    message = identify(userId="u1", traits={"plan": "p"})
    items = [{"message": message, "destination": d} for d in (a, b, a, b)]
    results = process_router(items, transport=scripted())
    payloads = [r["batchedRequest"]["body"]["JSON"] for r in results]
    assert payloads == [
        {"custom_id": "u1", "tier": "p"},
        {"custom_id": "u1", "plan": "p"},
        {"custom_id": "u1", "tier": "p"},
        {"custom_id": "u1", "plan": "p"},
    ]


def test_s12_11_repeated_runs_are_identical() -> None:
    cfg = config(userAttributesMapping=[{"from": "a", "to": "b"}])
    message = identify(userId="u1", traits={"a": 1, "c": 2})
    first = run(message, scripted(), cfg)
    for _ in range(3):
        assert run(message, scripted(), cfg) == first


# 12. Validation that needs no User.com answer happens before any request.


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (identify(traits={"email": "e@x.io"}), 'Missing required value from "userId"'),
        (track(traits={"email": "e@x.io"}), "Parameter event is required"),
        (track(event="E", traits={"email": "e@x.io"}), 'Missing required value from "userId"'),
        (page(userId="u1", context={"page": {"url": "u"}}), "Parameter path is required"),
        (group(userId="u1", traits={"name": "A"}), "Parameter groupId is required"),
    ],
    ids=["identify-userId", "track-event", "track-userId", "page-path", "group-groupId"],
)
def test_s12_12_validation_before_any_request(message: dict[str, Any], text: str) -> None:
    fake = scripted({"GET /users/search/*": ok(), "GET /users-by-id/*": ok()})
    assert_bad_event(run(message, fake), text, fake)


# 13. A group without groupId is an error.


def test_s12_13_group_without_group_id_makes_no_request() -> None:
    fake = group_fake()
    result = run(group(userId="u1", traits={"name": "A"}), fake)
    assert_failure(result, 400, INSTRUMENTATION, "Parameter groupId is required")
    assert fake.requests == []


# 14. Track timestamps given as epoch milliseconds become seconds.


def test_s12_14_epoch_milliseconds_become_seconds() -> None:
    for stamp in (1609769585801, "1609769585801"):
        assert (
            body(run(track(userId="u1", event="E", timestamp=stamp), user_found()))["timestamp"]
            == 1609769585
        )


# 15. lookup "Email"/"PHONE" accepted; numeric userKey used.


def test_s12_15_lookup_field_case_insensitive() -> None:
    fake = scripted()
    run(
        identify(
            userId="u1", traits={"email": "e@x.io"}, integrations={"User.com": {"lookup": "Email"}}
        ),
        fake,
    )
    run(
        identify(
            userId="u1", traits={"phone": "+1"}, integrations={"User.com": {"lookup": "PHONE"}}
        ),
        fake,
    )
    assert fake.calls == ["GET /users/search/?email=e@x.io", "GET /users/search/?phone_number=+1"]


def test_s12_15_numeric_user_key_is_used() -> None:
    fake = scripted({"GET /users/search/?key=12345": ok({"id": 8})})
    result = run(
        identify(userId="u1", context={"externalId": [{"type": "userKey", "id": 12345}]}), fake
    )
    assert final(result) == ("PUT", f"{BASE}/users/8/")


# 16. Lookups by email use the email fields only.


def test_s12_16_external_id_is_not_an_email() -> None:
    fake = scripted()
    external = {"externalId": [{"type": "crmId", "id": "x@y.io"}]}
    result = run(identify(anonymousId="anon", context=external), fake)
    assert_bad_event(result, "Default lookup field : email value is empty", fake)
    result = run(
        identify(userId="u1", context=external, integrations={"user": {"lookup": "email"}}), fake
    )
    assert_bad_event(result, "Lookup field : email value is not present", fake)


def test_s12_16_email_lookup_ignores_external_id() -> None:
    fake = scripted()
    external = [{"type": "crmId", "id": "x@y.io"}]
    run(
        identify(anonymousId="anon", traits={"email": "e@x.io"}, context={"externalId": external}),
        fake,
    )
    assert fake.calls == ["GET /users/search/?email=e@x.io"]


# 17. Company name from context.traits when the traits come only from there.


def test_s12_17_group_name_from_context_traits() -> None:
    message = group(userId="u1", groupId="g1", context={"traits": {"name": "Ctx Co", "size": 5}})
    result, fake, written = company_write(message)
    assert written["name"] == "Ctx Co"
    assert result["statusCode"] == 200
    assert fake.calls[-1] == "POST /companies/"
