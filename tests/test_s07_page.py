"""SPEC §7: page: required url/path/timestamp/userId, site-view payload, lookup outcome."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    BASE,
    NOT_FOUND_TAGS,
    assert_bad_event,
    assert_failure,
    body,
    final,
    ok,
    page,
    run,
    scripted,
    user_found,
)

from pipeline.testing import Reply

PAGE_NOT_FOUND = (
    "No user found with given lookup field. Page event cannot be completed if there is no "
    "valid user"
)
URL = "https://shop.example.com/p/1?x=1"
STAMP = "2024-05-01T10:00:00Z"


def full(**extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "userId": "u1",
        "timestamp": STAMP,
        "context": {"page": {"url": URL, "path": "/p/1"}},
    }
    return page(**{**fields, **extra})


def test_s7_found_user_posts_site_view() -> None:
    fake = user_found({"id": 7, "user_key": "abcdefghijkl"})
    result = run(full(properties={"title": "T"}), fake)
    assert final(result) == ("POST", f"{BASE}/site-views/")
    assert body(result) == {
        "client_user": "abcdefghijkl",
        "page_domain": URL,
        "page_path": "/p/1",
        "timestamp": STAMP,
    }
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s7_user_without_user_key_leaves_client_user_out() -> None:
    result = run(full(), user_found({"id": 7}))
    assert body(result) == {"page_domain": URL, "page_path": "/p/1", "timestamp": STAMP}


def test_s7_user_with_null_user_key_leaves_client_user_out() -> None:
    result = run(full(), user_found({"id": 7, "user_key": None}))
    assert "client_user" not in body(result)


def test_s7_url_and_path_from_properties() -> None:
    message = page(userId="u1", timestamp=STAMP, properties={"url": URL, "path": "/q"})
    result = body(run(message, user_found()))
    assert result["page_domain"] == URL
    assert result["page_path"] == "/q"


@pytest.mark.parametrize("stamp", [STAMP, 1714557600, "1714557600000", "whenever"])
def test_s7_timestamp_is_sent_as_given(stamp: Any) -> None:
    message = page(userId="u1", timestamp=stamp, context={"page": {"url": URL, "path": "/"}})
    assert body(run(message, user_found()))["timestamp"] == stamp


def test_s7_original_timestamp_used_when_no_timestamp() -> None:
    message = page(
        userId="u1", originalTimestamp=STAMP, context={"page": {"url": URL, "path": "/"}}
    )
    assert body(run(message, user_found()))["timestamp"] == STAMP


@pytest.mark.parametrize("missing", ["absent", "", None])
def test_s7_missing_url_is_error_before_any_request(missing: Any) -> None:
    message = full()
    if missing == "absent":
        del message["context"]["page"]["url"]
    else:
        message["context"]["page"]["url"] = missing
    fake = user_found()
    assert_bad_event(run(message, fake), "Parameter url is required", fake)


@pytest.mark.parametrize("missing", ["absent", "", None])
def test_s7_missing_path_is_error_before_any_request(missing: Any) -> None:
    message = full()
    if missing == "absent":
        del message["context"]["page"]["path"]
    else:
        message["context"]["page"]["path"] = missing
    fake = user_found()
    assert_bad_event(run(message, fake), "Parameter path is required", fake)


@pytest.mark.parametrize("missing", ["absent", "", None])
def test_s7_missing_timestamp_is_error_before_any_request(missing: Any) -> None:
    message = full()
    if missing == "absent":
        del message["timestamp"]
    else:
        message["timestamp"] = missing
    fake = user_found()
    assert_bad_event(run(message, fake), "Parameter timestamp is required", fake)


def test_s7_required_checks_in_order_url_path_timestamp() -> None:
    fake = user_found()
    assert_bad_event(run(page(userId="u1"), fake), "Parameter url is required", fake)
    only_url = page(userId="u1", context={"page": {"url": URL}})
    assert_bad_event(run(only_url, fake), "Parameter path is required", fake)
    no_stamp = page(userId="u1", context={"page": {"url": URL, "path": "/"}})
    assert_bad_event(run(no_stamp, fake), "Parameter timestamp is required", fake)


def test_s7_missing_user_id_list_is_error_before_any_request() -> None:
    fake = user_found()
    message = page(
        timestamp=STAMP,
        traits={"email": "e@x.io"},
        context={"page": {"url": URL, "path": "/"}},
    )
    assert_bad_event(run(message, fake), 'Missing required value from "userId"', fake)


def test_s7_not_found_is_page_error() -> None:
    fake = scripted()
    result = run(full(), fake)
    assert_failure(result, 400, NOT_FOUND_TAGS, PAGE_NOT_FOUND)
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s7_lookup_by_user_key() -> None:
    fake = scripted({"GET /users/search/?key=K": ok({"id": 1, "user_key": "K"})})
    message = full(
        context={"page": {"url": URL, "path": "/"}, "externalId": [{"type": "userKey", "id": "K"}]}
    )
    result = run(message, fake)
    assert body(result)["client_user"] == "K"
    assert fake.calls == ["GET /users/search/?key=K"]


def test_s7_lookup_failure_is_not_page_not_found() -> None:
    fake = scripted({"GET /users-by-id/u1/": Reply(503)})
    result = run(full(), fake)
    assert result["statusCode"] == 503
    assert result["error"] != PAGE_NOT_FOUND
