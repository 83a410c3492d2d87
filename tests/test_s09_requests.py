"""SPEC §9: requests: base URL, trailing slashes, headers, encoding of ids and queries."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest
from helpers import (
    BASE,
    HEADERS,
    HOST,
    KEY,
    body,
    config,
    final,
    group,
    group_fake,
    identify,
    item,
    ok,
    output,
    page,
    run,
    scripted,
    track,
)

import pipeline
from pipeline.testing import FakeUserCom, Reply

ODD_IDS = [
    "a/b",
    "a+b",
    "a b",
    "a?b=c",
    "a#b",
    "a&b",
    "a%2Fb",
    "50%",
    "zoë",
    "日本/語",
    "a;b",
    "emoji-🙂",
    "/leading",
    "trailing/",
]


def endpoint_segments(endpoint: str) -> tuple[str, ...]:
    """The percent-decoded path segments of an envelope endpoint, below the API base."""
    assert endpoint.startswith(f"{BASE}/"), endpoint
    assert endpoint.endswith("/"), endpoint
    rest = endpoint.removeprefix(BASE)
    assert "?" not in rest
    assert "#" not in rest
    return tuple(unquote(s) for s in rest.split("/")[1:-1])


def _every_request_is_well_formed(fake: FakeUserCom) -> None:
    assert fake.requests
    for seen in fake.requests:
        assert seen.host == HOST
        assert seen.raw_path.endswith("/"), seen.raw_path
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["authorization"] == f"Token {KEY}"
        assert seen.headers["accept"] == "*/*;version=2"


def test_s9_identify_requests_headers_and_slashes() -> None:
    fake = scripted()
    result = run(identify(userId="u1"), fake)
    _every_request_is_well_formed(fake)
    out = output(result)
    assert out["headers"] == HEADERS
    assert out["endpoint"].startswith(f"{BASE}/")
    assert out["endpoint"].endswith("/")


def test_s9_group_requests_headers_and_slashes() -> None:
    fake = group_fake()
    result = run(group(userId="u1", groupId="g1", traits={"name": "A"}), fake)
    _every_request_is_well_formed(fake)
    assert output(result)["headers"] == HEADERS
    assert output(result)["endpoint"] == f"{BASE}/companies/21/add_member/"


@pytest.mark.parametrize(
    ("message", "endpoint"),
    [
        (track(userId="u1", event="E"), f"{BASE}/events/"),
        (
            page(userId="u1", timestamp="t", context={"page": {"url": "u", "path": "/"}}),
            f"{BASE}/site-views/",
        ),
    ],
    ids=["track", "page"],
)
def test_s9_track_and_page_endpoints(message: dict[str, Any], endpoint: str) -> None:
    fake = scripted({"GET /users-by-id/u1/": ok()})
    result = run(message, fake)
    assert final(result) == ("POST", endpoint)
    assert output(result)["headers"] == HEADERS
    _every_request_is_well_formed(fake)


@pytest.mark.parametrize("user_id", ODD_IDS)
def test_s9_user_id_is_one_encoded_path_segment(user_id: str) -> None:
    fake = scripted()
    result = run(identify(userId=user_id), fake)
    seen = fake.requests[0]
    assert seen.segments == ("users-by-id", user_id)
    assert seen.query == ()
    assert body(result)["custom_id"] == user_id


@pytest.mark.parametrize("user_id", [".", ".."])
def test_s9_dot_segment_user_id_stays_one_segment(user_id: str) -> None:
    fake = scripted()
    run(identify(userId=user_id), fake)
    assert [seen.segments for seen in fake.requests] == [("users-by-id", user_id)]


@pytest.mark.parametrize(
    "email",
    [
        "a+b@x.io",
        "a b@x.io",
        "a&b=c@x.io",
        "a#b@x.io",
        "a?b@x.io",
        "zoë@x.io",
        "a%2Bb@x.io",
        "a/b@x.io",
    ],
)
def test_s9_email_query_value_is_percent_encoded(email: str) -> None:
    fake = scripted()
    run(identify(anonymousId="anon", traits={"email": email}), fake)
    seen = fake.requests[0]
    assert seen.segments == ("users", "search")
    assert seen.query == (("email", email),)
    assert "+" not in seen.raw_query
    assert " " not in seen.raw_query


@pytest.mark.parametrize("phone", ["+48 123 456 789", "+1-555-0100", "(0) 12#3"])
def test_s9_phone_query_value_is_percent_encoded(phone: str) -> None:
    fake = scripted()
    message = identify(
        userId="u1", traits={"phone": phone}, integrations={"user": {"lookup": "phone"}}
    )
    run(message, fake)
    assert fake.requests[0].query == (("phone_number", phone),)
    assert "+" not in fake.requests[0].raw_query


@pytest.mark.parametrize("key", ["k+1/2", "a b?c#d", "ключ"])
def test_s9_user_key_query_value_is_percent_encoded(key: str) -> None:
    fake = scripted()
    run(identify(userId="u1", context={"externalId": [{"type": "userKey", "id": key}]}), fake)
    assert fake.requests[0].query == (("key", key),)


@pytest.mark.parametrize("user_id", ["7/x", "a b", "#1", "ü?"])
def test_s9_found_user_id_is_encoded_in_put_path(user_id: str) -> None:
    fake = scripted({"GET /users-by-id/u1/": ok({"id": user_id})})
    result = run(identify(userId="u1"), fake)
    method, endpoint = final(result)
    assert method == "PUT"
    assert endpoint_segments(endpoint) == ("users", user_id)


@pytest.mark.parametrize("group_id", ODD_IDS)
def test_s9_group_id_is_one_encoded_path_segment(group_id: str) -> None:
    fake = scripted({"GET /users-by-id/u1/": ok(), "POST /companies/": Reply(201, {"id": 3})})
    run(group(userId="u1", groupId=group_id, traits={"name": "A"}), fake)
    assert fake.requests[1].segments == ("companies-by-id", group_id)
    assert fake.requests[2].body["custom_id"] == group_id


def test_s9_group_user_id_is_one_encoded_path_segment() -> None:
    fake = scripted()
    run(group(userId="a/b?c", groupId="g1", traits={"name": "A"}), fake)
    assert fake.requests[0].segments == ("users-by-id", "a/b?c")


@pytest.mark.parametrize("company_id", ["c/1", "c 1", "c#1", "c?1"])
def test_s9_company_ids_are_encoded(company_id: str) -> None:
    fake = group_fake(company=ok({"id": company_id}), write=Reply(200, {"id": company_id}))
    result = run(group(userId="u1", groupId="g1", traits={"name": "A"}), fake)
    assert fake.requests[2].segments == ("companies", company_id)
    method, endpoint = final(result)
    assert method == "POST"
    assert endpoint_segments(endpoint) == ("companies", company_id, "add_member")


def test_s9_numeric_ids_in_paths() -> None:
    fake = scripted({"GET /users-by-id/42/": ok({"id": 9})})
    assert final(run(identify(userId=42), fake)) == ("PUT", f"{BASE}/users/9/")


def test_s9_lookups_carry_no_body_and_bodies_drop_top_level_nulls() -> None:
    fake = group_fake()
    result = run(group(userId="u1", groupId="g1", traits={"name": "A", "size": None}), fake)
    assert fake.requests[0].body is None
    assert fake.requests[1].body is None
    assert "size" not in fake.requests[2].body
    assert None not in body(result).values()


def test_s9_host_never_changes_whatever_the_ids() -> None:
    fake = scripted()
    for user_id in ["@evil.com", "//evil.com", "x@evil.com:80", "http://evil.com"]:
        run(identify(userId=user_id, traits={"email": "a@evil.com"}), fake)
    assert {seen.host for seen in fake.requests} == {HOST}
    assert [seen.segments[0] for seen in fake.requests] == ["users-by-id"] * 4


def test_s9_key_is_masked_in_human_facing_renderings() -> None:
    cfg = pipeline.parse_config(config()).unwrap()
    assert KEY not in repr(cfg)
    assert KEY not in str(cfg)
    shown = pipeline.plan(item(identify(userId="u1", traits={"gender": "x"})))
    assert isinstance(shown, pipeline.Plan)
    assert KEY not in str(shown)
    assert KEY not in repr(shown)
    failed = pipeline.plan(item(identify(userId="u1"), config(appSubdomain="evil.com")))
    assert isinstance(failed, pipeline.PipelineError)
    assert KEY not in repr(failed)
