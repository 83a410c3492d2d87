"""The User.com sandbox: routes over Starlette's TestClient, faults also over loopback sockets."""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.exceptions import StarletteDeprecationWarning

from pipeline.sandbox import (
    SandboxOptions,
    SandboxState,
    create_app,
    sandbox_state,
    serve_in_thread,
)
from pipeline.sandbox.errors import ApiError
from pipeline.sandbox.options import ForcedStatus, parse_forced

with warnings.catch_warnings():  # starlette warns that its TestClient will move to httpx2
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "k" * 64
AUTH = {"Authorization": f"Token {TOKEN}"}
API = "/api/public"
NOW = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def fixed_clock() -> datetime:
    return NOW


def sandbox(options: SandboxOptions | None = None) -> TestClient:
    app = create_app(options or SandboxOptions(api_key=TOKEN), clock=fixed_clock)
    return TestClient(app, headers=AUTH, follow_redirects=False)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with sandbox() as test_client:
        yield test_client


def create_user(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/users/", json=body)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


def state_of(client: TestClient) -> dict[str, Any]:
    response = client.get("/__sandbox__/state")
    assert response.status_code == 200
    state: dict[str, Any] = response.json()
    return state


# auth, slashes, unknown routes


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Token wrong"},
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": "Token "},
    ],
)
def test_missing_or_wrong_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    client.headers.pop("Authorization")
    response = client.get(f"{API}/users/search/?key=abc", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}
    assert response.headers["www-authenticate"] == "Token"


def test_without_api_key_any_non_empty_token_is_accepted() -> None:
    with sandbox(SandboxOptions()) as client:
        answer = client.get(f"{API}/users/search/?key=abc", headers={"Authorization": "Token x"})
        assert answer.status_code == 404
        empty = client.get(f"{API}/users/search/?key=abc", headers={"Authorization": "Token"})
        assert empty.status_code == 401


def test_path_without_trailing_slash_is_a_301_to_the_slashed_url(client: TestClient) -> None:
    response = client.get(f"{API}/users/search?key=a%2Bb", headers={"Authorization": ""})
    assert response.status_code == 301
    assert response.headers["location"] == f"{API}/users/search/?key=a%2Bb"
    encoded = client.post(f"{API}/users-by-id/a%2Fb", json={})
    assert encoded.status_code == 301
    assert encoded.headers["location"] == f"{API}/users-by-id/a%2Fb/"


@pytest.mark.parametrize(
    "path", [f"{API}/nothing/here/", f"{API}/", "/elsewhere", f"{API}/users/x/"]
)
def test_unknown_routes_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_known_path_with_wrong_method_is_405(client: TestClient) -> None:
    response = client.delete(f"{API}/users/1/")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT"


def test_malformed_or_non_object_bodies_are_400(client: TestClient) -> None:
    broken = client.post(f"{API}/users/", content=b"{nope", headers={"Content-Type": "json"})
    assert broken.status_code == 400
    assert broken.json()["detail"].startswith("JSON parse error")
    listed = client.post(f"{API}/users/", json=[1])
    assert listed.status_code == 400
    assert "non_field_errors" in listed.json()["errors"]


# users


def test_created_user_has_v2_shape(client: TestClient) -> None:
    user = create_user(
        client,
        custom_id="u-1",
        email="ann@example.com",
        first_name="Ann",
        last_name="Lee",
        gender=3,
        status=2,
        city="Kraków",
        tags=["vip", "beta"],
        plan="pro",
        **{"Verified Member": True},
    )
    assert user["id"] == 1
    assert len(user["user_key"]) == 12
    assert user["user_key"].isalnum()
    assert user["name"] == "Ann Lee"
    assert "first_name" not in user
    assert "last_name" not in user
    assert (user["gender"], user["status"]) == ("female", "user")
    assert user["city"] == "Kraków"
    assert user["tags"] == [{"id": 1, "name": "vip"}, {"id": 2, "name": "beta"}]
    assert user["plan"] == "pro"
    assert user["Verified Member"] is True
    assert user["companies"] == []
    assert user["created_at"] == user["updated_at"] == "2024-01-02T03:04:05.000006Z"
    assert create_user(client)["id"] == 2


@pytest.mark.parametrize(
    ("gender", "status", "shown"),
    [(1, 1, ("unknown", "visitor")), (2, 2, ("male", "user")), (3, 1, ("female", "visitor"))],
)
def test_gender_and_status_go_in_as_ints_and_come_out_as_names(
    client: TestClient, gender: int, status: int, shown: tuple[str, str]
) -> None:
    user = create_user(client, gender=gender, status=status)
    assert (user["gender"], user["status"]) == shown


def test_defaults_are_unknown_visitor_and_no_name(client: TestClient) -> None:
    user = create_user(client)
    assert (user["gender"], user["status"], user["name"]) == ("unknown", "visitor", None)


@pytest.mark.parametrize(
    ("field", "value"),
    [("gender", "male"), ("gender", 4), ("status", 3), ("status", "user"), ("status", True)],
)
def test_enum_values_other_than_their_ints_are_400(
    client: TestClient, field: str, value: object
) -> None:
    response = client.post(f"{API}/users/", json={field: value})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert state_of(client)["users"] == []


LIMITS = [("first_name", 40), ("last_name", 40), ("city", 64), ("phone_number", 64)]
USER_WRITES = [
    ("POST", "/users/", "fresh"),
    ("PUT", "/users/1/", "old"),
    ("PUT", "/users-by-id/old/", "old"),
    ("POST", "/users/update_or_create/", "old"),
    ("POST", "/users/update_or_create/", "fresh"),
]


@pytest.mark.parametrize(("field", "limit"), LIMITS)
@pytest.mark.parametrize(("method", "path", "custom_id"), USER_WRITES)
def test_over_long_names_city_and_phone_are_400_on_every_user_write(
    client: TestClient, field: str, limit: int, method: str, path: str, custom_id: str
) -> None:
    """usercom-api.md §3.5, §9: names at most 40 characters, city and phone at most 64."""
    create_user(client, custom_id="old")
    before = state_of(client)["users"]
    body = {"custom_id": custom_id}
    refused = client.request(method, f"{API}{path}", json={**body, field: "x" * (limit + 1)})
    assert refused.status_code == 400
    assert refused.json() == {
        "errors": {field: [f"Ensure this field has no more than {limit} characters."]}
    }
    assert state_of(client)["users"] == before
    accepted = client.request(method, f"{API}{path}", json={**body, field: "é" * limit})
    assert accepted.status_code in (200, 201), accepted.text


def test_create_with_a_taken_custom_id_is_400(client: TestClient) -> None:
    create_user(client, custom_id="dup")
    response = client.post(f"{API}/users/", json={"custom_id": "dup", "email": "x@y.z"})
    assert response.status_code == 400
    assert response.json() == {"errors": {"custom_id": ["user with this custom id already exists"]}}
    assert len(state_of(client)["users"]) == 1


def test_put_is_a_partial_update_and_tags_are_add_only(client: TestClient) -> None:
    user = create_user(client, custom_id="u", first_name="Ann", email="a@b.c", tags=["a"], x=1)
    response = client.put(f"{API}/users/{user['id']}/", json={"last_name": "Lee", "tags": ["b"]})
    assert response.status_code == 200
    updated = response.json()
    assert updated["name"] == "Ann Lee"
    assert updated["email"] == "a@b.c"
    assert updated["x"] == 1
    assert [tag["name"] for tag in updated["tags"]] == ["a", "b"]
    assert updated["user_key"] == user["user_key"]


def test_put_unknown_user_is_404_and_taking_another_custom_id_is_400(client: TestClient) -> None:
    assert client.put(f"{API}/users/99/", json={"email": "a@b.c"}).status_code == 404
    create_user(client, custom_id="first")
    second = create_user(client, custom_id="second")
    response = client.put(f"{API}/users/{second['id']}/", json={"custom_id": "first"})
    assert response.status_code == 400
    same = client.put(f"{API}/users/{second['id']}/", json={"custom_id": "second"})
    assert same.status_code == 200


def test_search_by_key_and_email_return_one_user_or_404(client: TestClient) -> None:
    first = create_user(client, email="shared@example.com", custom_id="1")
    create_user(client, email="shared@example.com", custom_id="2")
    by_key = client.get(f"{API}/users/search/", params={"key": first["user_key"]})
    assert by_key.status_code == 200
    assert by_key.json() == first
    by_email = client.get(f"{API}/users/search/", params={"email": "shared@example.com"})
    assert by_email.status_code == 200
    assert by_email.json()["custom_id"] == "1"
    many = client.get(
        f"{API}/users/search/", params={"email": "shared@example.com", "many": "true"}
    )
    assert [user["custom_id"] for user in many.json()] == ["1", "2"]
    for params in ({"key": "nope"}, {"email": "nobody@example.com"}):
        missing = client.get(f"{API}/users/search/", params=params)
        assert missing.status_code == 404
        assert missing.json() == {"detail": "Not found."}


def test_search_by_phone_returns_a_paginated_envelope(client: TestClient) -> None:
    user = create_user(client, phone_number="+48123456789")
    found = client.get(f"{API}/users/search/", params={"phone_number": "+48123456789"})
    assert found.status_code == 200
    assert found.json() == {"count": 1, "next": None, "previous": None, "results": [user]}
    empty = client.get(f"{API}/users/search/", params={"phone_number": "000"})
    assert empty.status_code == 200
    assert empty.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_search_without_a_known_parameter_is_400(client: TestClient) -> None:
    assert client.get(f"{API}/users/search/?name=x").status_code == 400


def test_users_by_id_decodes_the_custom_id_even_an_encoded_slash(client: TestClient) -> None:
    user = create_user(client, custom_id="team/ann@x.com")
    response = client.get(f"{API}/users-by-id/team%2Fann%40x.com/")
    assert response.status_code == 200
    assert response.json()["id"] == user["id"]
    assert client.get(f"{API}/users-by-id/team/ann@x.com/").status_code == 404
    assert client.get(f"{API}/users-by-id/unknown/").status_code == 404


CUSTOM_IDS = st.text(st.characters(exclude_categories=["Cs"]), min_size=1).filter(
    lambda text: text.strip(".") != ""  # "." and ".." are dot segments that clients resolve away
)


@settings(max_examples=40, deadline=None)
@given(CUSTOM_IDS)
def test_any_custom_id_round_trips_through_its_encoded_path(custom_id: str) -> None:
    with sandbox() as client:
        created = create_user(client, custom_id=custom_id)
        response = client.get(f"{API}/users-by-id/{quote(custom_id, safe='')}/")
        assert response.status_code == 200
        assert response.json()["id"] == created["id"]


def test_update_or_create_answers_exactly_created_and_id(client: TestClient) -> None:
    """usercom-api.md §4.7, §9 (D-uoc, DOC): ``{"created", "id"}``, not the user object."""
    create_user(client, custom_id="someone-else")
    first = client.post(f"{API}/users/update_or_create/", json={"custom_id": "c1", "email": "a@b"})
    assert first.status_code == 201
    assert first.json() == {"created": True, "id": 2}
    second = client.post(
        f"{API}/users/update_or_create/", json={"custom_id": "c1", "city": "Oslo", "created": 1}
    )
    assert second.status_code == 200
    assert second.json() == {"created": False, "id": 2}
    stored = client.get(f"{API}/users-by-id/c1/").json()
    assert (stored["id"], stored["email"], stored["city"]) == (2, "a@b", "Oslo")
    assert stored["created"] == 1  # a custom attribute of that name is stored, not shadowed
    assert len(state_of(client)["users"]) == 2


def test_update_or_create_requires_a_custom_id(client: TestClient) -> None:
    response = client.post(f"{API}/users/update_or_create/", json={"email": "a@b"})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["custom_id"]


def test_user_keys_come_from_the_seed() -> None:
    def keys(seed: int) -> list[str]:
        with sandbox(SandboxOptions(seed=seed)) as client:
            return [create_user(client)["user_key"] for _ in range(3)]

    assert keys(1) == keys(1)
    assert keys(1) != keys(2)
    assert len(set(keys(1))) == 3


# representation options: the user key's spelling, unknown attributes


def test_user_key_field_key_renders_key_everywhere_and_key_search_still_works() -> None:
    """usercom-api.md §3.4, §9: the v2 docs' examples print ``key``, RudderStack's mocks
    ``user_key``."""
    with sandbox(SandboxOptions(api_key=TOKEN, user_key_field="key")) as client:
        created = client.post(
            f"{API}/users/",
            json={"custom_id": "ann", "email": "a@b.c", "phone_number": "1", "key": "mine"},
        )
        assert created.status_code == 201
        user = created.json()
        key = user["key"]
        assert len(key) == 12
        assert key != "mine"  # read-only, like user_key
        shown = [
            user,
            client.get(f"{API}/users/1/").json(),
            client.put(f"{API}/users/1/", json={"city": "Oslo"}).json(),
            client.get(f"{API}/users-by-id/ann/").json(),
            client.put(f"{API}/users-by-id/ann/", json={}).json(),
            client.get(f"{API}/users/search/", params={"key": key}).json(),
            client.get(f"{API}/users/search/", params={"email": "a@b.c"}).json(),
            *client.get(f"{API}/users/search/", params={"email": "a@b.c", "many": "true"}).json(),
            *client.get(f"{API}/users/search/", params={"phone_number": "1"}).json()["results"],
        ]
        for answer in shown:
            assert answer["key"] == key
            assert "user_key" not in answer
        assert list(shown[0])[:2] == ["id", "key"]
        view = {"client_user": key, "page_domain": "https://x.y/", "page_path": "/"}
        assert client.post(f"{API}/site-views/", json=view).status_code == 201
        assert state_of(client)["users"][0]["user_key"] == key  # the state view keeps user_key


def test_user_key_field_defaults_to_user_key() -> None:
    with sandbox() as client:
        user = create_user(client)
        assert "user_key" in user
        assert "key" not in user
        assert SandboxOptions().user_key_field == "user_key"


def test_unknown_attributes_accept_stores_them_by_default(client: TestClient) -> None:
    """usercom-api.md §3.3, §6, §9: what the API does with unknown keys is UNKNOWN."""
    user = create_user(client, custom_id="ann", plan="pro", **{"Verified Member": True})
    assert (user["plan"], user["Verified Member"]) == ("pro", True)
    assert SandboxOptions().unknown_attributes == "accept"


def test_unknown_attributes_ignore_drops_them_and_keeps_standard_fields() -> None:
    with sandbox(SandboxOptions(api_key=TOKEN, unknown_attributes="ignore")) as client:
        user = create_user(client, custom_id="ann", city="Oslo", plan="pro", score=3)
        assert "plan" not in user
        assert (user["city"], user["score"]) == ("Oslo", 3)
        upsert = client.post(f"{API}/users/update_or_create/", json={"custom_id": "ann", "age": 5})
        assert upsert.json() == {"created": False, "id": user["id"]}
        updated = client.put(f"{API}/users/{user['id']}/", json={"plan": "max", "region": "N"})
        assert updated.status_code == 200
        assert "plan" not in updated.json()
        assert "age" not in updated.json()
        assert updated.json()["region"] == "N"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/users/"),
        ("PUT", "/users/1/"),
        ("PUT", "/users-by-id/ann/"),
        ("POST", "/users/update_or_create/"),
    ],
)
def test_unknown_attributes_reject_is_400_naming_each_of_them(method: str, path: str) -> None:
    with sandbox(SandboxOptions(api_key=TOKEN, unknown_attributes="reject")) as client:
        create_user(client, custom_id="ann")
        before = state_of(client)["users"]
        custom_id = "bob" if path == "/users/" else "ann"
        body = {"custom_id": custom_id, "city": "Oslo", "plan": "pro", "Verified Member": True}
        refused = client.request(method, f"{API}{path}", json=body)
        assert refused.status_code == 400
        errors = refused.json()["errors"]
        assert list(errors) == ["plan", "Verified Member"]
        assert errors["plan"] == ['Unknown attribute "plan": create it in the app first.']
        assert state_of(client)["users"] == before
        standard = {
            "custom_id": custom_id,
            "email": "a@b.c",
            "gender": 2,
            "status": 1,
            "tags": ["x"],
            "company_custom_id": "none",
            "score": 1,
            "unsubscribed": True,
            "notifications": False,
            "assigned_to": None,
            "id": 9,
            "user_key": "ignored",
            "key": "ignored",
            "name": "ignored",
        }
        assert client.request(method, f"{API}{path}", json=standard).status_code in (200, 201)


def test_standard_loose_attributes_have_defaults_and_are_stored_as_sent(
    client: TestClient,
) -> None:
    """usercom-api.md §3.1 (examples), §4.5 (D-mass-std allowed standard attributes)."""
    user = create_user(client)
    assert (user["score"], user["unsubscribed"], user["notifications"], user["assigned_to"]) == (
        0,
        False,
        True,
        None,
    )
    updated = client.put(f"{API}/users/{user['id']}/", json={"score": 7, "assigned_to": 3})
    assert (updated.json()["score"], updated.json()["assigned_to"]) == (7, 3)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"user_key_field": "userKey"}, "user_key_field must be one of user_key, key"),
        ({"unknown_attributes": "drop"}, "unknown_attributes must be one of accept, ignore"),
    ],
)
def test_representation_options_are_validated(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SandboxOptions(**bad)


# indexed lookups


def test_lookups_follow_changed_custom_id_email_and_phone(client: TestClient) -> None:
    ann = create_user(client, custom_id="a", email="x@y.z", phone_number="1")
    bob = create_user(client, custom_id="b", email="x@y.z", phone_number="1")
    client.put(f"{API}/users/{ann['id']}/", json={"custom_id": "a2", "email": "new@y.z"})
    client.put(f"{API}/users/{bob['id']}/", json={"phone_number": None})
    assert client.get(f"{API}/users-by-id/a/").status_code == 404
    assert client.get(f"{API}/users-by-id/a2/").json()["id"] == ann["id"]
    create_user(client, custom_id="a", email="x@y.z")  # the freed custom id can be taken again
    search = f"{API}/users/search/"
    shared = client.get(search, params={"email": "x@y.z", "many": "true"}).json()
    assert [user["custom_id"] for user in shared] == ["b", "a"]
    client.put(f"{API}/users/{ann['id']}/", json={"email": "x@y.z"})
    shared = client.get(search, params={"email": "x@y.z", "many": "true"}).json()
    assert [user["id"] for user in shared] == [1, 2, 3]  # by id, whatever the order of writes
    assert client.get(search, params={"email": "x@y.z"}).json()["id"] == 1
    assert client.get(search, params={"phone_number": "1"}).json()["count"] == 1
    assert client.get(search, params={"email": "new@y.z"}).status_code == 404


VALUES = st.sampled_from(["a", "b", "c", None])
USER_BODIES = st.fixed_dictionaries(
    {}, optional={"custom_id": VALUES, "email": VALUES, "phone_number": VALUES}
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), USER_BODIES), max_size=25))
def test_indexed_lookups_agree_with_a_scan(writes: list[tuple[int, dict[str, Any]]]) -> None:
    state = SandboxState(rng=random.Random(0), clock=fixed_clock)
    for target, body in writes:
        with contextlib.suppress(ApiError):  # a taken custom id
            if target == 0 or target > len(state.users):
                state.create_user(body)
            else:
                state.update_user(state.users[target], body)
    for field in ("custom_id", "email", "phone_number"):
        for value in ("a", "b", "c"):
            scan = [user for user in state.users.values() if user.strings[field] == value]
            assert state.users_where(field, value) == scan
    for user in state.users.values():
        assert state.users_where("user_key", user.user_key) == [user]


def test_user_companies_are_listed_by_company_id(client: TestClient) -> None:
    create_user(client, custom_id="ann")
    for custom_id in ("c1", "c2", "c3"):
        client.post(f"{API}/companies/", json={"name": custom_id, "custom_id": custom_id})
    for company_id in (3, 1):
        client.post(f"{API}/companies/{company_id}/add_member/", json={"user_custom_id": "ann"})
    client.put(f"{API}/users-by-id/ann/", json={"company_custom_id": "c2"})
    client.put(f"{API}/companies/1/", json={"custom_id": "renamed"})
    listed = client.get(f"{API}/users-by-id/ann/").json()["companies"]
    assert [company["name"] for company in listed] == ["c1", "c2", "c3"]
    assert client.get(f"{API}/companies-by-id/c1/").status_code == 404
    assert client.get(f"{API}/companies-by-id/renamed/").json()["id"] == 1


# events and site views


def test_events_need_an_existing_user_and_are_stored_in_order(client: TestClient) -> None:
    user = create_user(client)
    unknown = client.post(f"{API}/events/", json={"user_id": 999, "name": "x"})
    assert unknown.status_code == 400
    assert list(unknown.json()["errors"]) == ["user_id"]
    missing = client.post(f"{API}/events/", json={"name": "x"})
    assert missing.status_code == 400
    first = client.post(
        f"{API}/events/",
        json={"user_id": user["id"], "name": "buy", "timestamp": 1426967129, "data": {"sku": 1}},
    )
    assert first.status_code == 201
    assert first.json() == {"id": 1, "created": True}
    again = client.post(f"{API}/events/", json={"user_id": user["id"], "name": "buy"})
    assert again.json() == {"id": 2, "created": False}
    other = client.post(f"{API}/events/", json={"user_id": user["id"], "name": "view"})
    assert other.json() == {"id": 3, "created": True}
    assert state_of(client)["events"] == [
        {"user_id": user["id"], "name": "buy", "timestamp": 1426967129, "data": {"sku": 1}},
        {"user_id": user["id"], "name": "buy", "timestamp": int(NOW.timestamp()), "data": {}},
        {"user_id": user["id"], "name": "view", "timestamp": int(NOW.timestamp()), "data": {}},
    ]


def test_event_timestamps_must_be_unix_seconds(client: TestClient) -> None:
    user = create_user(client)
    body = {"user_id": user["id"], "name": "x", "timestamp": "2024-01-01T00:00:00Z"}
    response = client.post(f"{API}/events/", json=body)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["timestamp"]


def test_events_by_custom_id_answer_id_and_created_and_are_stored_like_events(
    client: TestClient,
) -> None:
    """usercom-api.md §4.10, §9 (DOC-OLD, CLIENT): ``{name, timestamp, data}`` answers
    ``{id, created}``."""
    create_user(client, custom_id="other")
    user = create_user(client, custom_id="team/ann")
    by_custom_id = f"{API}/users-by-id/team%2Fann/events/"
    first = client.post(
        by_custom_id, json={"name": "buy", "timestamp": 1426967129, "data": {"sku": 1}}
    )
    assert first.status_code == 201
    assert first.json() == {"id": 1, "created": True}
    plain = client.post(f"{API}/events/", json={"user_id": user["id"], "name": "buy"})
    assert plain.json() == {"id": 2, "created": False}
    again = client.post(by_custom_id, json={"name": "view", "user_id": "team/ann"})
    assert again.json() == {"id": 3, "created": True}
    assert state_of(client)["events"] == [
        {"user_id": user["id"], "name": "buy", "timestamp": 1426967129, "data": {"sku": 1}},
        {"user_id": user["id"], "name": "buy", "timestamp": int(NOW.timestamp()), "data": {}},
        {"user_id": user["id"], "name": "view", "timestamp": int(NOW.timestamp()), "data": {}},
    ]


def test_events_by_custom_id_404_for_an_unknown_user_and_400_for_a_bad_body(
    client: TestClient,
) -> None:
    unknown = client.post(f"{API}/users-by-id/nobody/events/", json={"name": "x"})
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Not found."}
    create_user(client, custom_id="ann")
    for body, field in [
        ({}, "name"),
        ({"name": "x", "timestamp": "2024-01-01T00:00:00Z"}, "timestamp"),
        ({"name": "x", "data": [1]}, "data"),
    ]:
        refused = client.post(f"{API}/users-by-id/ann/events/", json=body)
        assert refused.status_code == 400
        assert list(refused.json()["errors"]) == [field]
    assert client.get(f"{API}/users-by-id/ann/events/").status_code == 405
    assert state_of(client)["events"] == []


def test_events_by_custom_id_need_the_token_and_the_slash(client: TestClient) -> None:
    create_user(client, custom_id="ann")
    url = f"{API}/users-by-id/ann/events/"
    refused = client.post(url, json={"name": "x"}, headers={"Authorization": "Token wrong"})
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Invalid token."}
    moved = client.post(url.rstrip("/"), json={"name": "x"})
    assert moved.status_code == 301
    assert moved.headers["location"] == url
    assert state_of(client)["events"] == []


def test_events_by_custom_id_can_be_forced_by_route_name() -> None:
    options = SandboxOptions(
        api_key=TOKEN, forced=(parse_forced("users-by-id-events-create=504x1"),)
    )
    with sandbox(options) as client:
        create_user(client, custom_id="ann")
        url = f"{API}/users-by-id/ann/events/"
        assert client.post(url, json={"name": "x"}).status_code == 504
        assert client.post(url, json={"name": "x"}).status_code == 201


def test_site_views_need_a_known_user_key_and_echo_with_an_id(client: TestClient) -> None:
    user = create_user(client)
    view = {
        "client_user": user["user_key"],
        "page_domain": "https://example.com/pricing",
        "page_path": "/pricing",
        "timestamp": "2021-01-04T14:13:05.801+05:30",
    }
    unknown = client.post(f"{API}/site-views/", json={**view, "client_user": "nobodyatall0"})
    assert unknown.status_code == 400
    assert list(unknown.json()["errors"]) == ["client_user"]
    response = client.post(f"{API}/site-views/", json=view)
    assert response.status_code == 201
    assert response.json() == {"id": 1, **view}
    assert state_of(client)["site_views"] == [{"id": 1, **view}]


# companies


def test_company_create_links_user_custom_id_and_flattens_custom_attributes(
    client: TestClient,
) -> None:
    user = create_user(client, custom_id="user@123")
    response = client.post(
        f"{API}/companies/",
        json={
            "name": "Rudder Ventures",
            "custom_id": "group@795",
            "user_custom_id": "user@123",
            "country": "usa",
            "phone_numbers": "+1 555",
            "founded": "15 aug, 1947",
        },
    )
    assert response.status_code == 201
    company = response.json()
    assert company["id"] == 1
    assert company["employees"] == [user["id"]]
    assert company["founded"] == "15 aug, 1947"
    assert company["phone_numbers"] == "+1 555"
    shown = client.get(f"{API}/users/{user['id']}/").json()
    assert shown["companies"] == [
        {"id": 1, "name": "Rudder Ventures", "member_since": "2024-01-02T03:04:05.000006Z"}
    ]
    joiner = create_user(client, company_custom_id="group@795")
    assert joiner["companies"] == shown["companies"]
    assert client.get(f"{API}/companies/1/").json()["employees"] == [user["id"], joiner["id"]]


def test_company_update_and_lookups(client: TestClient) -> None:
    created = client.post(f"{API}/companies/", json={"name": "Acme", "custom_id": "a/1"}).json()
    update = client.put(f"{API}/companies/{created['id']}/", json={"city": "Oslo", "tags": ["b2b"]})
    assert update.status_code == 200
    assert (update.json()["name"], update.json()["city"]) == ("Acme", "Oslo")
    by_custom_id = client.get(f"{API}/companies-by-id/a%2F1/")
    assert by_custom_id.status_code == 200
    assert by_custom_id.json() == update.json()
    assert client.get(f"{API}/companies/{created['id']}/").json() == update.json()
    assert client.get(f"{API}/companies-by-id/missing/").status_code == 404
    assert client.get(f"{API}/companies/42/").status_code == 404
    assert client.put(f"{API}/companies/42/", json={}).status_code == 404
    duplicate = client.post(f"{API}/companies/", json={"custom_id": "a/1"})
    assert duplicate.status_code == 400
    assert list(duplicate.json()["errors"]) == ["custom_id"]


def test_add_member(client: TestClient) -> None:
    ann = create_user(client, custom_id="ann")
    bob = create_user(client, custom_id="bob")
    company = client.post(f"{API}/companies/", json={"name": "Acme", "custom_id": "acme"}).json()
    add = f"{API}/companies/{company['id']}/add_member/"
    by_id = client.post(add, json={"user_id": ann["id"]})
    assert by_id.status_code == 200
    assert by_id.json() == {"id": company["id"], "user_id": ann["id"], "added": True}
    both = client.post(add, json={"user_id": bob["id"], "user_custom_id": "bob"})
    assert both.json() == {"id": company["id"], "user_id": bob["id"], "added": True}
    assert client.post(add, json={"user_custom_id": "ann"}).status_code == 200
    assert client.get(f"{API}/companies/{company['id']}/").json()["employees"] == [1, 2]
    assert client.post(add, json={"user_id": 99}).status_code == 400
    assert client.post(add, json={"user_custom_id": "nobody"}).status_code == 400
    assert client.post(add, json={"user_id": ann["id"], "user_custom_id": "bob"}).status_code == 400
    assert client.post(add, json={}).status_code == 400
    unknown = client.post(f"{API}/companies/99/add_member/", json={"user_id": ann["id"]})
    assert unknown.status_code == 404
    companies = state_of(client)["companies"]
    assert [(c["id"], c["custom_id"], c["employees"]) for c in companies] == [(1, "acme", [1, 2])]


# faults


def test_forced_status_by_path_prefix_and_by_route_name() -> None:
    options = SandboxOptions(
        api_key=TOKEN, forced_status={"/users-by-id/": 500, "companies-create": 429}
    )
    with sandbox(options) as client:
        forced = client.get(f"{API}/users-by-id/anyone/")
        assert forced.status_code == 500
        throttled = client.post(f"{API}/companies/", json={"name": "x"})
        assert throttled.status_code == 429
        assert throttled.headers["retry-after"] == "1"
        assert client.get(f"{API}/users/search/?key=x").status_code == 404
        assert state_of(client)["companies"] == []


def test_seeded_throttle_gives_429_with_retry_after_reproducibly() -> None:
    def statuses(seed: int) -> list[int]:
        with sandbox(SandboxOptions(api_key=TOKEN, throttle_rate=0.5, seed=seed)) as client:
            return [client.get(f"{API}/users/search/?key=x").status_code for _ in range(30)]

    first = statuses(3)
    assert first == statuses(3)
    assert set(first) == {404, 429}
    with sandbox(SandboxOptions(api_key=TOKEN, throttle_rate=1.0)) as client:
        response = client.get(f"{API}/users/search/?key=x")
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"
        assert response.json() == {"detail": "Request was throttled."}


def test_error_rate_gives_random_5xx_including_504_and_writes_nothing() -> None:
    """usercom-api.md §9: User.com documents 500, 502 and 504 (DOC)."""

    def codes(seed: int) -> list[int]:
        with sandbox(SandboxOptions(api_key=TOKEN, error_rate=1.0, seed=seed)) as client:
            answers = [client.post(f"{API}/users/", json={}) for _ in range(40)]
            assert state_of(client)["users"] == []
        timed_out = next(answer for answer in answers if answer.status_code == 504)
        assert timed_out.json() == {"detail": "Gateway timeout."}
        return [answer.status_code for answer in answers]

    drawn = codes(5)
    assert set(drawn) == {500, 502, 503, 504}
    assert codes(5) == drawn


def test_rate_limit_is_a_token_bucket() -> None:
    with sandbox(SandboxOptions(api_key=TOKEN, rate_limit_rps=0.01)) as client:
        assert client.get(f"{API}/users/search/?key=x").status_code == 404
        limited = client.get(f"{API}/users/search/?key=x")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1


def test_a_rate_limit_per_key_gives_each_app_its_own_bucket() -> None:
    # One sandbox standing in for many User.com apps, each with its own limit.
    def search(client: TestClient, key: str) -> int:
        answer = client.get(f"{API}/users/search/?key=x", headers={"Authorization": f"Token {key}"})
        status: int = answer.status_code
        return status

    options = SandboxOptions(rate_limit_rps=0.01, rate_limit_per_key=True)
    with sandbox(options) as client:
        assert [search(client, "app-a"), search(client, "app-b")] == [404, 404]
        assert [search(client, "app-a"), search(client, "app-b")] == [429, 429]


def test_latency_delays_api_answers() -> None:
    with sandbox(SandboxOptions(api_key=TOKEN, latency_ms=60)) as client:
        started = time.perf_counter()
        client.get(f"{API}/users/search/?key=x")
        assert time.perf_counter() - started >= 0.06


def test_faults_apply_only_to_the_api() -> None:
    with sandbox(SandboxOptions(throttle_rate=1.0, forced_status={"/": 500})) as client:
        assert client.get("/__sandbox__/state").status_code == 200
        assert client.get(f"{API}/users/").status_code == 500


@pytest.mark.parametrize(
    "bad",
    [
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"latency_ms": -1},
        {"rate_limit_rps": 0},
        {"forced_status": {"/": 99}},
    ],
)
def test_options_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|not an HTTP status"):
        SandboxOptions(**bad)


def test_state_endpoint_shows_everything_and_counts_requests() -> None:
    app = create_app(SandboxOptions(api_key=TOKEN, forced_status={"events-create": 503}))
    with TestClient(app, headers=AUTH) as client:
        assert state_of(client) == {
            "users": [],
            "companies": [],
            "events": [],
            "site_views": [],
            "request_count": 0,
        }
        user = create_user(client, custom_id="u")
        assert client.post(f"{API}/events/", json={"user_id": 1, "name": "x"}).status_code == 503
        client.get(f"{API}/users/search/?key=nope", headers={"Authorization": "Token no"})
        client.get("/not-the-api")
        state = state_of(client)
        assert state["request_count"] == 4
        assert state["users"] == [client.get(f"{API}/users/{user['id']}/").json()]
        assert state["events"] == []
        assert sandbox_state(app).request_count == 5


# forced statuses for a method or for the first N requests ([METHOD ]ROUTE=STATUS[xN])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "POST /users/update_or_create/=503x180",
            ForcedStatus("/users/update_or_create/", 503, method="POST", times=180),
        ),
        ("users-by-id=401", ForcedStatus("users-by-id", 401)),
        ("GET /users-by-id/=500x3", ForcedStatus("/users-by-id/", 500, method="GET", times=3)),
        ("  post   /events/=429X2 ", ForcedStatus("/events/", 429, method="POST", times=2)),
        ("/=301", ForcedStatus("/", 301)),
        ("events-create=504x1", ForcedStatus("events-create", 504, times=1)),
    ],
)
def test_parse_forced(spec: str, expected: ForcedStatus) -> None:
    assert parse_forced(spec) == expected
    assert parse_forced(str(expected)) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", r"expected \[METHOD \]ROUTE=STATUS\[xN\]"),
        ("users-by-id", r"expected \[METHOD \]ROUTE=STATUS"),
        ("=503", r"expected \[METHOD \]ROUTE=STATUS"),
        ("POST /events/ extra=503", r"expected \[METHOD \]ROUTE=STATUS"),
        ("/events/=", "the status must be 3 digits"),
        ("/events/=50", "the status must be 3 digits"),
        ("/events/=abc", "the status must be 3 digits"),
        ("/events/=503x", "the status must be 3 digits"),
        ("/events/=503x-1", "the status must be 3 digits"),
        ("/events/=503*2", "the status must be 3 digits"),
        ("/events/=199", "must be 200..599, got 199"),
        ("/events/=600", "must be 200..599, got 600"),
        ("/events/=503x0", "count must be at least 1, got 0"),
        ("users-by-idd=500", "unknown route 'users-by-idd'"),
        ("events=500", "or a path prefix starting with '/'"),
        ("FETCH /events/=500", "unknown HTTP method 'FETCH'"),
        ("POST users-by-id=500", "users-by-id only answers GET"),
        ("/users/search/?key=a=404", "must not have a query"),
    ],
)
def test_parse_forced_refuses_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        parse_forced(spec)
    assert str(refused.value).startswith(f"bad forced rule {spec!r}: ")
    with pytest.raises(ValueError, match=message) as on_the_command_line:
        parse_forced(spec, called="--force")
    assert str(on_the_command_line.value).startswith(f"bad --force {spec!r}: ")


def test_forced_for_the_first_n_requests_then_normal_handling() -> None:
    options = SandboxOptions(
        api_key=TOKEN,
        forced=(parse_forced("POST /users/=503x2"), parse_forced("POST /users/=429x1")),
    )
    with sandbox(options) as client:
        codes = [
            client.post(f"{API}/users/", json={"custom_id": "a"}).status_code for _ in range(4)
        ]
        assert codes == [503, 503, 429, 201]
        assert [user["custom_id"] for user in state_of(client)["users"]] == ["a"]
    with sandbox(options) as fresh:  # counts belong to one app, not to the options
        assert fresh.post(f"{API}/users/", json={}).status_code == 503


def test_forced_for_one_method_only() -> None:
    options = SandboxOptions(api_key=TOKEN, forced=(parse_forced("GET /users-by-id/=500x3"),))
    with sandbox(options) as client:
        create_user(client, custom_id="bob")
        assert client.put(f"{API}/users-by-id/bob/", json={"first_name": "B"}).status_code == 200
        assert [client.get(f"{API}/users-by-id/bob/").status_code for _ in range(4)] == [
            500,
            500,
            500,
            200,
        ]


def test_forced_by_route_name_and_before_the_permanent_map() -> None:
    options = SandboxOptions(
        api_key=TOKEN,
        forced=(parse_forced("users-by-id=401x1"),),
        forced_status={"/users-by-id/": 504},
    )
    with sandbox(options) as client:
        refused = client.get(f"{API}/users-by-id/x/")
        assert refused.status_code == 401
        assert refused.json() == {"detail": "Invalid token."}
        timed_out = client.get(f"{API}/users-by-id/x/")
        assert timed_out.status_code == 504
        assert timed_out.json() == {"detail": "Gateway timeout."}


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_forced_3xx_has_a_location(status: int) -> None:
    options = SandboxOptions(api_key=TOKEN, forced=(parse_forced(f"/users/search/={status}"),))
    with sandbox(options) as client:
        moved = client.get(f"{API}/users/search/?key=x")
        assert moved.status_code == status
        assert moved.headers["location"] == f"{API}/users/search/?key=x"
        assert moved.json() == {"detail": f"Forced status {status}."}


@pytest.mark.parametrize(
    "bad",
    [
        {"latency_ms": float("nan")},
        {"latency_ms": float("inf")},
        {"rate_limit_rps": float("inf")},
        {"error_rate": float("nan")},
    ],
)
def test_options_refuse_non_finite_numbers(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        SandboxOptions(**bad)


# over real loopback sockets


def test_round_trip_over_a_real_socket() -> None:
    with (
        serve_in_thread(SandboxOptions(api_key=TOKEN)) as base_url,
        httpx.Client(base_url=base_url, headers=AUTH) as client,
    ):
        assert base_url.startswith("http://127.0.0.1:")
        created = client.post(f"{API}/users/", json={"custom_id": "a/b", "gender": 2})
        assert created.status_code == 201
        found = client.get(f"{API}/users-by-id/a%2Fb/")
        assert found.json() == created.json()
        assert found.json()["gender"] == "male"
        redirected = client.get(f"{API}/users-by-id/a%2Fb", follow_redirects=True)
        assert redirected.status_code == 200
        assert redirected.history[0].status_code == 301
        assert client.get("/__sandbox__/state").json()["request_count"] == 4


def test_dropped_and_lost_responses_are_transport_errors() -> None:
    with serve_in_thread(SandboxOptions(api_key=TOKEN, drop_rate=1.0)) as base_url:
        with httpx.Client(base_url=base_url, headers=AUTH) as client:
            for _ in range(2):
                with pytest.raises(httpx.TransportError):
                    client.post(f"{API}/users/", json={"custom_id": "never"})
        state = httpx.get(f"{base_url}/__sandbox__/state").json()
        assert state["users"] == []
        assert state["request_count"] == 2

    with serve_in_thread(SandboxOptions(api_key=TOKEN, lost_response_rate=1.0)) as base_url:
        with httpx.Client(base_url=base_url, headers=AUTH) as client:
            with pytest.raises(httpx.TransportError):
                client.post(f"{API}/users/", json={"custom_id": "written"})
            assert client.get(f"{API}/users-by-id/written/").status_code == 200
        users = httpx.get(f"{base_url}/__sandbox__/state").json()["users"]
        assert [user["custom_id"] for user in users] == ["written"]
