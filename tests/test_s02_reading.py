"""SPEC §2: reading values: named path lists, first match wins, present/empty, no fall through."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    body,
    company_write,
    group,
    identify,
    page,
    put,
    run,
    scripted,
    track,
    user_found,
)

_NAMES3 = ("firstName", "firstname", "first_name")
_LAST3 = ("lastName", "lastname", "last_name")
_ZIP_TOP = ("zip", "zipcode", "zip_code", "zipCode", "postalcode", "postal_code", "postalCode")
_ZIP_ADDRESS = ("zipcode", "zip_code", "zip", "zipCode", "postalcode", "postal_code", "postalCode")

USER_ID = (
    "userId",
    "traits.userId",
    "traits.id",
    "context.traits.userId",
    "context.traits.id",
    "anonymousId",
)
EMAIL = ("traits.email", "context.traits.email", "properties.email")
PHONE = ("traits.phone", "context.traits.phone", "properties.phone")
FIRST_NAME = tuple(f"traits.{n}" for n in _NAMES3) + tuple(f"context.traits.{n}" for n in _NAMES3)
LAST_NAME = tuple(f"traits.{n}" for n in _LAST3) + tuple(f"context.traits.{n}" for n in _LAST3)
CITY = ("traits.address.city", "context.traits.address.city", "traits.city", "context.traits.city")
AVATAR = (
    "traits.avatar",
    "context.traits.avatar",
    "traits.avatarURL",
    "context.traits.avatarURL",
    "traits.avatar_URL",
    "context.traits.avatar_URL",
)
ADDRESS = ("traits.address", "context.traits.address")
ZIPCODE = (
    tuple(f"traits.{n}" for n in _ZIP_TOP)
    + tuple(f"traits.address.{n}" for n in _ZIP_ADDRESS)
    + tuple(f"context.traits.{n}" for n in _ZIP_TOP)
    + tuple(f"context.traits.address.{n}" for n in _ZIP_TOP)
)
GROUP_ID = ("groupId", "traits.groupId")
TIMESTAMP = ("timestamp", "originalTimestamp")
PAGE_URL = ("context.page.url", "properties.url")
PAGE_PATH = ("context.page.path", "properties.path")


def _two(name: str) -> tuple[str, str]:
    return (f"traits.{name}", f"context.traits.{name}")


# identify payload field <- path list (values are plain strings, no conversion)
IDENTIFY_LISTS: dict[str, tuple[tuple[str, ...], str]] = {
    "emailOnly": (EMAIL, "email"),
    "phone": (PHONE, "phone_number"),
    "firstName": (FIRST_NAME, "first_name"),
    "lastName": (LAST_NAME, "last_name"),
    "city": (CITY, "city"),
    "region": (_two("region"), "region"),
    "country": (_two("country"), "country"),
    "avatar": (AVATAR, "gravatar_url"),
    "tags": (_two("tags"), "tags"),
    "timezone": (_two("timezone"), "timezone"),
    "googleUrl": (_two("googleUrl"), "google_url"),
    "linkedinUrl": (_two("linkedinUrl"), "linkedin_url"),
    "twitterUrl": (_two("twitterUrl"), "twitter_url"),
    "facebookUrl": (_two("facebookUrl"), "facebook_url"),
}


def _cases(lists: dict[str, tuple[tuple[str, ...], str]], skip_last: bool = False) -> list[Any]:
    cases = []
    for name, (paths, target) in lists.items():
        for index, path in enumerate(paths):
            if skip_last and index == len(paths) - 1:
                continue
            cases.append(pytest.param(paths, target, index, id=f"{name}-{path}"))
    return cases


def _fill(message: dict[str, Any], paths: tuple[str, ...], start: int) -> dict[str, Any]:
    for later in range(start, len(paths)):
        put(message, paths[later], f"v{later}")
    return message


@pytest.mark.parametrize(("paths", "target", "index"), _cases(IDENTIFY_LISTS))
def test_s2_identify_path_lists_first_match_wins(
    paths: tuple[str, ...], target: str, index: int
) -> None:
    message = _fill(identify(userId="u1"), paths, index)
    assert body(run(message))[target] == f"v{index}"


@pytest.mark.parametrize("empty", ["", None])
@pytest.mark.parametrize(("paths", "target", "index"), _cases(IDENTIFY_LISTS, skip_last=True))
def test_s2_identify_empty_or_null_value_is_not_present(
    paths: tuple[str, ...], target: str, index: int, empty: Any
) -> None:
    message = _fill(identify(userId="u1"), paths, index + 1)
    put(message, paths[index], empty)
    assert body(run(message))[target] == f"v{index + 1}"


@pytest.mark.parametrize("index", range(len(USER_ID)))
def test_s2_user_id_list_first_match_wins(index: int) -> None:
    # properties.email gives a lookup when there is no top-level userId.
    message = _fill(identify(properties={"email": "e@x.io"}), USER_ID, index)
    assert body(run(message))["custom_id"] == f"v{index}"


@pytest.mark.parametrize("index", range(len(USER_ID) - 1))
def test_s2_user_id_list_empty_string_falls_through(index: int) -> None:
    message = _fill(identify(properties={"email": "e@x.io"}), USER_ID, index + 1)
    put(message, USER_ID[index], "")
    assert body(run(message))["custom_id"] == f"v{index + 1}"


@pytest.mark.parametrize(
    ("paths", "values", "target", "expected"),
    [
        pytest.param(_two("gender"), ("m", "f"), "gender", (2, 3), id="gender"),
        pytest.param(_two("status"), ("v", "u"), "status", (1, 2), id="status"),
    ],
)
def test_s2_converted_lists_first_match_wins(
    paths: tuple[str, str], values: tuple[str, str], target: str, expected: tuple[int, int]
) -> None:
    both = identify(userId="u1")
    put(both, paths[0], values[0])
    put(both, paths[1], values[1])
    assert body(run(both))[target] == expected[0]
    second = identify(userId="u1")
    put(second, paths[0], "")
    put(second, paths[1], values[1])
    assert body(run(second))[target] == expected[1]


@pytest.mark.parametrize("value", [0, False, [], {}], ids=["zero", "false", "list", "object"])
def test_s2_zero_false_and_empty_containers_count_as_present(value: Any) -> None:
    message = identify(userId="u1", traits={"region": value}, context={"traits": {"region": "R"}})
    got = body(run(message))["region"]
    assert got == value
    assert type(got) is type(value)


def test_s2_numeric_user_id_stays_a_number() -> None:
    fake = scripted()
    result = body(run(identify(userId=42), fake))
    assert result["custom_id"] == 42
    assert fake.calls == ["GET /users-by-id/42/"]


def test_s2_user_id_zero_is_present() -> None:
    fake = scripted()
    result = body(run(identify(userId=0, anonymousId="anon"), fake))
    assert result["custom_id"] == 0
    assert fake.calls == ["GET /users-by-id/0/"]


def test_s2_values_are_sent_as_found() -> None:
    tags = ["a", {"b": 1}]
    result = body(run(identify(userId="u1", traits={"tags": tags, "timezone": 3})))
    assert result["tags"] == tags
    assert result["timezone"] == 3


def test_s2_gender_failing_conversion_is_dropped_without_fall_through() -> None:
    message = identify(
        userId="u1", traits={"gender": "robot"}, context={"traits": {"gender": "female"}}
    )
    result = body(run(message))
    assert "gender" not in result
    assert result == {"custom_id": "u1"}


def test_s2_status_failing_conversion_is_dropped_without_fall_through() -> None:
    message = identify(userId="u1", traits={"status": "lead"}, context={"traits": {"status": "v"}})
    assert body(run(message)) == {"custom_id": "u1"}


def test_s2_timestamp_failing_conversion_is_dropped_without_fall_through() -> None:
    message = track(
        userId="u1", event="E", timestamp="not a date", originalTimestamp="2021-01-04T14:13:05Z"
    )
    assert "timestamp" not in body(run(message, user_found()))


# --- group lists: the company write's body ------------------------------------------------


def _group_message() -> dict[str, Any]:
    return group(userId="u1", groupId="g1", traits={"name": "Acme"})


@pytest.mark.parametrize("index", range(len(ZIPCODE)))
def test_s2_zipcode_list_first_match_wins(index: int) -> None:
    message = _group_message()
    for later in range(index, len(ZIPCODE)):
        # traits.postal_code is not a company standard source key: as a remaining group trait
        # it would override postal_code (§8.2), so it is only set when it is the chosen path.
        if ZIPCODE[later] == "traits.postal_code" and later != index:
            continue
        put(message, ZIPCODE[later], f"v{later}")
    _, _, written = company_write(message)
    assert written["postal_code"] == f"v{index}"


def test_s2_zipcode_address_order_differs_from_top_level_order() -> None:
    # Under traits.address, zipcode comes before zip; at top level zip comes first.
    address = {"zip": "Z", "zipcode": "ZC"}
    _, _, top = company_write(group(userId="u1", groupId="g1", traits={"name": "A", **address}))
    assert top["postal_code"] == "Z"
    _, _, nested = company_write(
        group(userId="u1", groupId="g1", traits={"name": "A", "address": address})
    )
    assert nested["postal_code"] == "ZC"
    _, _, context_nested = company_write(
        group(
            userId="u1",
            groupId="g1",
            traits={"name": "A"},
            context={"traits": {"address": address}},
        )
    )
    assert context_nested["postal_code"] == "Z"


@pytest.mark.parametrize(
    ("paths", "target"),
    [
        pytest.param(EMAIL, "email", id="emailOnly"),
        pytest.param(PHONE, "phone_numbers", id="phone"),
        pytest.param(CITY, "city", id="city"),
        pytest.param(_two("region"), "region", id="region"),
        pytest.param(_two("country"), "country", id="country"),
    ],
)
def test_s2_company_path_lists_first_match_wins(paths: tuple[str, ...], target: str) -> None:
    for index in range(len(paths)):
        message = _fill(_group_message(), paths, index)
        _, _, written = company_write(message)
        assert written[target] == f"v{index}", paths[index]


def test_s2_address_list_first_match_wins() -> None:
    message = _group_message()
    put(message, "traits.address", "1 Main St")
    put(message, "context.traits.address", "2 Side St")
    assert company_write(message)[2]["address"] == "1 Main St"
    message = _group_message()
    put(message, "traits.address", "")
    put(message, "context.traits.address", "2 Side St")
    assert company_write(message)[2]["address"] == "2 Side St"


def test_s2_group_id_list_first_match_wins() -> None:
    message = group(userId="u1", groupId="g-top", traits={"name": "A", "groupId": "g-traits"})
    _, fake, written = company_write(message)
    assert written["custom_id"] == "g-top"
    assert fake.calls[1] == "GET /companies-by-id/g-top/"
    message = group(userId="u1", traits={"name": "A", "groupId": "g-traits"})
    _, fake, written = company_write(message)
    assert written["custom_id"] == "g-traits"
    assert fake.calls[1] == "GET /companies-by-id/g-traits/"


def test_s2_traits_list_is_the_first_object_present() -> None:
    both = group(userId="u1", groupId="g1", traits={"name": "A"}, context={"traits": {"name": "B"}})
    assert company_write(both)[2]["name"] == "A"
    context_only = group(userId="u1", groupId="g1", context={"traits": {"name": "B"}})
    assert company_write(context_only)[2]["name"] == "B"
    not_an_object = group(userId="u1", groupId="g1", traits="x", context={"traits": {"name": "B"}})
    assert company_write(not_an_object)[2]["name"] == "B"


# --- track / page lists -------------------------------------------------------------------


def test_s2_track_timestamp_list_first_match_wins() -> None:
    both = track(userId="u1", event="E", timestamp=100, originalTimestamp=200)
    assert body(run(both, user_found()))["timestamp"] == 100
    second = track(userId="u1", event="E", timestamp="", originalTimestamp=200)
    assert body(run(second, user_found()))["timestamp"] == 200


@pytest.mark.parametrize(
    ("paths", "target"),
    [
        pytest.param(PAGE_URL, "page_domain", id="pageUrl"),
        pytest.param(PAGE_PATH, "page_path", id="pagePath"),
        pytest.param(TIMESTAMP, "timestamp", id="timestamp"),
    ],
)
def test_s2_page_path_lists_first_match_wins(paths: tuple[str, ...], target: str) -> None:
    def message() -> dict[str, Any]:
        base = page(userId="u1")
        for path, value in ((PAGE_URL[0], "U"), (PAGE_PATH[0], "P"), (TIMESTAMP[0], "T")):
            put(base, path, value)
        for path in paths:
            put(base, path, None)
        return base

    for index in range(len(paths)):
        full = _fill(message(), paths, index)
        assert body(run(full, user_found()))[target] == f"v{index}"
    blank = _fill(message(), paths, 1)
    put(blank, paths[0], "")
    assert body(run(blank, user_found()))[target] == "v1"
