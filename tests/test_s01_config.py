"""SPEC §1: destination settings: key, subdomain rules, mapping lists."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    BASE,
    HEADERS,
    HOST,
    KEY,
    assert_bad_config,
    body,
    config,
    final,
    group,
    group_fake,
    identify,
    output,
    run,
    scripted,
    track,
    user_found,
)

from pipeline import process

IDENTIFY = identify(userId="u1", traits={"email": "ada@x.io"})


def test_s1_api_key_is_sent_as_token_authorization() -> None:
    fake = scripted()
    result = run(IDENTIFY, fake)
    assert output(result)["headers"] == HEADERS
    assert fake.requests, "a lookup was expected"
    for seen in fake.requests:
        assert seen.headers["authorization"] == f"Token {KEY}"


@pytest.mark.parametrize("missing", ["absent", None, ""])
def test_s1_missing_or_empty_api_key_is_configuration_error(missing: Any) -> None:
    cfg = config()
    if missing == "absent":
        del cfg["apiKey"]
    else:
        cfg["apiKey"] = missing
    fake = scripted()
    result = run(IDENTIFY, fake, cfg)
    assert_bad_config(result, fake)


@pytest.mark.parametrize("missing", ["absent", None, ""])
def test_s1_missing_or_empty_subdomain_is_configuration_error(missing: Any) -> None:
    cfg = config()
    if missing == "absent":
        del cfg["appSubdomain"]
    else:
        cfg["appSubdomain"] = missing
    fake = scripted()
    result = run(IDENTIFY, fake, cfg)
    assert_bad_config(result, fake)
    assert "undefined" not in result["error"]


def test_s1_missing_config_object_is_configuration_error() -> None:
    fake = scripted()
    result = process({"message": IDENTIFY, "destination": {}}, transport=fake)
    assert_bad_config(result, fake)


@pytest.mark.parametrize(
    "subdomain",
    [
        "acme",
        "ACME",
        "Acme",
        " acme ",
        "acme.user.com",
        "ACME.USER.COM",
        "https://ACME.user.com/",
        "https://acme.user.com",
        "http://acme.user.com/",
        "http://acme",
        "https://acme/",
        "acme/",
        " https://acme.user.com/ ",
    ],
)
def test_s1_friendly_subdomain_forms_normalise_to_the_label(subdomain: str) -> None:
    fake = scripted()
    result = run(IDENTIFY, fake, config(appSubdomain=subdomain))
    method, endpoint = final(result)
    assert (method, endpoint) == ("POST", f"{BASE}/users/")
    assert [seen.host for seen in fake.requests] == [HOST]


@pytest.mark.parametrize("subdomain", ["my-app-2", "a", "0", "a" * 63, "x1-y2-z3"])
def test_s1_any_valid_dns_label_is_accepted(subdomain: str) -> None:
    fake = scripted()
    result = run(IDENTIFY, fake, config(appSubdomain=subdomain))
    assert final(result) == ("POST", f"https://{subdomain}.user.com/api/public/users/")
    assert [seen.host for seen in fake.requests] == [f"{subdomain}.user.com"]


@pytest.mark.parametrize(
    "subdomain",
    [
        "a.b",
        "acme.evil.com",
        "evil.com",
        "acme.user.com.evil.com",
        "user.com",
        ".user.com",
        "acme/x",
        "acme/../evil",
        "https://evil.com/acme",
        "acme.user.com/api",
        "acme@evil.com",
        "evil.com#",
        "acme#x",
        "acme?x=1",
        "ac me",
        "-acme",
        "acme-",
        "a" * 64,
        "acme_1",
        "acme:443",
        "ftp://acme",
        "acmé",
        "acme\\evil",
        "https://",
    ],
)
def test_s1_bad_subdomain_is_configuration_error_without_request(subdomain: str) -> None:
    fake = scripted()
    result = run(IDENTIFY, fake, config(appSubdomain=subdomain))
    assert_bad_config(result, fake)


def test_s1_config_error_message_never_contains_the_key() -> None:
    fake = scripted()
    for cfg in (
        config(appSubdomain=f"{KEY}.evil.com"),
        config(appSubdomain="evil.com"),
        config(appSubdomain=None),
    ):
        result = run(IDENTIFY, fake, cfg)
        assert_bad_config(result, fake)
        assert KEY not in result["error"]
        assert "SECRETKEY" not in result["error"]


def test_s1_missing_mapping_lists_mean_empty_lists() -> None:
    result = run(identify(userId="u1", traits={"plan": "pro"}), scripted(), config())
    assert body(result) == {"custom_id": "u1", "plan": "pro"}


def test_s1_null_mapping_lists_mean_empty_lists() -> None:
    cfg = config(userAttributesMapping=None, userEvents=None, companyAttributesMapping=None)
    assert body(run(identify(userId="u1", traits={"plan": "pro"}), scripted(), cfg)) == {
        "custom_id": "u1",
        "plan": "pro",
    }
    tracked = run(track(userId="u1", event="Bought", properties={"a": 1}), user_found(), cfg)
    assert body(tracked) == {"name": "Bought", "data": {"a": 1}, "user_id": 7}
    grouped = run(group(userId="u1", groupId="g1", traits={"name": "Acme"}), group_fake(), cfg)
    assert output(grouped)["endpoint"] == f"{BASE}/companies/21/add_member/"


@pytest.mark.parametrize("blank", ["", "   "])
def test_s1_mapping_entry_with_blank_from_is_ignored(blank: str) -> None:
    cfg = config(userAttributesMapping=[{"from": blank, "to": "tier"}])
    result = run(identify(userId="u1", traits={"plan": "pro"}), scripted(), cfg)
    assert body(result) == {"custom_id": "u1", "plan": "pro"}


def test_s1_two_mapping_entries_with_same_from_last_wins() -> None:
    cfg = config(
        userAttributesMapping=[{"from": "plan", "to": "tier"}, {"from": "plan", "to": "level"}]
    )
    result = run(identify(userId="u1", traits={"plan": "pro"}), scripted(), cfg)
    assert body(result) == {"custom_id": "u1", "level": "pro"}


def test_s1_company_mapping_same_from_last_wins() -> None:
    cfg = config(
        companyAttributesMapping=[
            {"from": "industry", "to": "sector"},
            {"from": "industry", "to": "branch"},
        ]
    )
    message = group(userId="u1", groupId="g1", traits={"name": "Acme", "industry": "tech"})
    fake = group_fake()
    run(message, fake, cfg)
    written = fake.requests[2].body
    assert written["branch"] == "tech"
    assert "sector" not in written
    assert "industry" not in written


def test_s1_event_property_mapping_same_from_last_wins() -> None:
    cfg = config(
        userEvents=[
            {
                "rsEventName": "Bought",
                "userEventName": "purchase",
                "eventProperties": [{"from": "sku", "to": "a"}, {"from": "sku", "to": "b"}],
            }
        ]
    )
    result = run(track(userId="u1", event="Bought", properties={"sku": "X"}), user_found(), cfg)
    assert body(result)["data"] == {"b": "X"}


def test_s1_mapping_keys_are_case_sensitive() -> None:
    cfg = config(userAttributesMapping=[{"from": "Plan", "to": "tier"}])
    result = run(identify(userId="u1", traits={"plan": "pro"}), scripted(), cfg)
    assert body(result) == {"custom_id": "u1", "plan": "pro"}


def test_s1_mapping_applies_when_case_matches() -> None:
    cfg = config(userAttributesMapping=[{"from": "Plan", "to": "tier"}])
    result = run(identify(userId="u1", traits={"Plan": "pro"}), scripted(), cfg)
    assert body(result) == {"custom_id": "u1", "tier": "pro"}
