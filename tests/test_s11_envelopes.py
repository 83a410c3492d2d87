"""SPEC §11: processor and router envelopes, metadata, order, async twins, warnings."""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import pytest
from helpers import (
    BASE,
    HEADERS,
    KEY,
    USER,
    arun,
    config,
    group,
    group_fake,
    identify,
    item,
    ok,
    page,
    run,
    scripted,
    tags,
    track,
    user_found,
)

import pipeline
from pipeline import aprocess, aprocess_router, process, process_router
from pipeline.testing import FakeUserCom, Reply

METADATA = {"jobId": 17, "sourceId": "src", "destinationId": "dest-1", "attempt": 0}


def rest(method: str, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "1",
        "type": "REST",
        "method": method,
        "endpoint": endpoint,
        "headers": HEADERS,
        "params": {},
        "body": {"JSON": payload, "JSON_ARRAY": {}, "XML": {}, "FORM": {}},
        "files": {},
        "userId": "",
    }


CREATED = rest("POST", f"{BASE}/users/", {"custom_id": "u1", "email": "e@x.io"})
IDENTIFY = identify(userId="u1", traits={"email": "e@x.io"})


# --- processor ----------------------------------------------------------------------------


def test_s11_processor_success_envelope_with_metadata() -> None:
    result = process(item(IDENTIFY, metadata=METADATA), transport=scripted())
    assert result == {"output": CREATED, "statusCode": 200, "metadata": METADATA}


def test_s11_processor_success_envelope_without_metadata() -> None:
    result = process(item(IDENTIFY), transport=scripted())
    assert result == {"output": CREATED, "statusCode": 200}


def test_s11_processor_failure_envelope_with_metadata() -> None:
    fake = scripted()
    result = process(item(track(userId="u1"), metadata=METADATA), transport=fake)
    assert result == {
        "error": "Parameter event is required",
        "statusCode": 400,
        "statTags": tags("dataValidation", "instrumentation"),
        "metadata": METADATA,
    }


def test_s11_processor_failure_envelope_without_metadata() -> None:
    result = process(item(track(userId="u1")), transport=scripted())
    assert result == {
        "error": "Parameter event is required",
        "statusCode": 400,
        "statTags": tags("dataValidation", "instrumentation"),
    }


def test_s11_processor_not_found_envelope_has_meta() -> None:
    result = process(item(track(userId="u1", event="E"), metadata=METADATA), transport=scripted())
    assert result["statTags"] == {
        "errorCategory": "network",
        "errorType": "aborted",
        "meta": "instrumentation",
        "destType": "USER",
        "module": "destination",
        "implementation": "native",
        "feature": "processor",
    }
    assert result["metadata"] == METADATA


@pytest.mark.parametrize(
    ("message", "fake_factory", "expected"),
    [
        pytest.param(
            track(userId="u1", event="E", properties={"a": 1}),
            user_found,
            rest("POST", f"{BASE}/events/", {"name": "E", "data": {"a": 1}, "user_id": 7}),
            id="track",
        ),
        pytest.param(
            page(userId="u1", timestamp="t", context={"page": {"url": "u", "path": "/p"}}),
            user_found,
            rest(
                "POST",
                f"{BASE}/site-views/",
                {
                    "client_user": USER["user_key"],
                    "page_domain": "u",
                    "page_path": "/p",
                    "timestamp": "t",
                },
            ),
            id="page",
        ),
        pytest.param(
            group(userId="u1", groupId="g1", traits={"name": "A"}),
            group_fake,
            rest(
                "POST", f"{BASE}/companies/21/add_member/", {"user_id": 7, "user_custom_id": "u1"}
            ),
            id="group",
        ),
    ],
)
def test_s11_processor_output_is_the_final_request(
    message: dict[str, Any], fake_factory: Any, expected: dict[str, Any]
) -> None:
    assert run(message, fake_factory()) == {"output": expected, "statusCode": 200}


def test_s11_final_request_is_returned_not_sent() -> None:
    fake = scripted({"GET /users-by-id/u1/": ok()})
    result = run(IDENTIFY, fake)
    assert result["output"]["method"] == "PUT"
    assert fake.calls == ["GET /users-by-id/u1/"]


def test_s11_metadata_is_echoed_as_given() -> None:
    for metadata in ({"a": [1, {"b": None}]}, "text", 0):
        result = process(item(IDENTIFY, metadata=metadata), transport=scripted())
        assert result["metadata"] == metadata


def test_s11_input_item_is_not_mutated() -> None:
    raw = item(identify(userId="u1", traits={"plan": None, "gender": "x"}), metadata=METADATA)
    before = copy.deepcopy(raw)
    process(raw, transport=scripted())
    process_router([raw], transport=scripted())
    assert raw == before


# --- router -------------------------------------------------------------------------------


def _router_item(
    message: dict[str, Any], cfg: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    built = {"message": message, "destination": {"ID": "d", "Config": cfg or config()}}
    return {**built, **extra}


def test_s11_router_success_envelope() -> None:
    raw = _router_item(IDENTIFY, metadata=METADATA)
    [result] = process_router([raw], transport=scripted())
    expected_request = {k: v for k, v in CREATED.items() if k != "userId"}
    assert result == {
        "batchedRequest": expected_request,
        "metadata": [METADATA],
        "batched": False,
        "statusCode": 200,
        "destination": raw["destination"],
    }
    assert "userId" not in result["batchedRequest"]


def test_s11_router_failure_envelope() -> None:
    raw = _router_item(track(userId="u1"), metadata=METADATA)
    [result] = process_router([raw], transport=scripted())
    assert result == {
        "metadata": [METADATA],
        "batched": False,
        "statusCode": 400,
        "error": "Parameter event is required",
        "statTags": tags("dataValidation", "instrumentation", feature="router"),
        "destination": raw["destination"],
    }


def test_s11_router_not_found_failure_has_meta_and_router_feature() -> None:
    raw = _router_item(track(userId="u1", event="E"), metadata=METADATA)
    [result] = process_router([raw], transport=scripted())
    assert result["statTags"] == tags("network", "aborted", feature="router", meta=True)


def test_s11_router_metadata_omitted_when_absent() -> None:
    ok_item = _router_item(IDENTIFY)
    bad_item = _router_item(track(userId="u1"))
    success, failure = process_router([ok_item, bad_item], transport=scripted())
    assert "metadata" not in success
    assert "metadata" not in failure
    assert success["statusCode"] == 200
    assert failure["statusCode"] == 400


def test_s11_router_empty_batch_is_empty_list() -> None:
    fake = scripted()
    assert process_router([], transport=fake) == []
    assert fake.requests == []


def test_s11_router_keeps_input_order_and_echoes_each_destination() -> None:
    other = config(appSubdomain="other")
    items = [
        _router_item(identify(userId="a"), metadata={"jobId": 1}),
        _router_item(track(userId="b"), metadata={"jobId": 2}),
        _router_item(identify(userId="c"), other, metadata={"jobId": 3}),
        _router_item({"type": "screen"}, metadata={"jobId": 4}),
        _router_item(identify(userId="d"), config(apiKey=""), metadata={"jobId": 5}),
        _router_item(identify(userId="e"), metadata={"jobId": 6}),
    ]
    fake = scripted()
    results = process_router(items, transport=fake)
    assert [r["metadata"] for r in results] == [[{"jobId": i}] for i in range(1, 7)]
    assert [r["statusCode"] for r in results] == [200, 400, 200, 400, 400, 200]
    assert [r["destination"] for r in results] == [i["destination"] for i in items]
    assert results[0]["batchedRequest"]["body"]["JSON"] == {"custom_id": "a"}
    assert results[2]["batchedRequest"]["endpoint"] == "https://other.user.com/api/public/users/"
    assert results[5]["batchedRequest"]["body"]["JSON"] == {"custom_id": "e"}
    assert fake.calls == ["GET /users-by-id/a/", "GET /users-by-id/c/", "GET /users-by-id/e/"]
    assert [seen.host for seen in fake.requests] == [
        "acme.user.com",
        "other.user.com",
        "acme.user.com",
    ]


def test_s11_router_destination_echo_contains_the_key() -> None:
    raw = _router_item(IDENTIFY)
    [result] = process_router([raw], transport=scripted())
    assert result["destination"]["Config"]["apiKey"] == KEY


def test_s11_router_network_failure_envelope() -> None:
    raw = _router_item(IDENTIFY, metadata=METADATA)
    fake = scripted({"GET /users-by-id/u1/": Reply(503)})
    [result] = process_router([raw], transport=fake)
    assert result["statusCode"] == 503
    assert result["statTags"] == tags("network", "retryable", feature="router")
    assert result["metadata"] == [METADATA]
    assert result["batched"] is False


# --- async twins --------------------------------------------------------------------------

SAMPLES: list[Any] = [
    IDENTIFY,
    identify(userId="u/1", traits={"gender": "F", "plan": "p"}),
    track(userId="u1", event="E", timestamp=1609769585801),
    track(userId="u1"),
    page(userId="u1", timestamp="t", context={"page": {"url": "u", "path": "/"}}),
    group(userId="u1", groupId="g1", traits={"name": "A", "address": {"a": "1", "b": 2}}),
    {"type": "alias"},
]


def _fake_for_samples(kind: str) -> FakeUserCom:
    if kind == "group":
        return group_fake()
    if kind in ("track", "page"):
        return user_found()
    return scripted()


@pytest.mark.parametrize("message", SAMPLES)
def test_s11_aprocess_gives_the_same_result_and_requests(message: dict[str, Any]) -> None:
    sync_fake = _fake_for_samples(message["type"])
    async_fake = _fake_for_samples(message["type"])
    expected = run(message, sync_fake)
    assert arun(message, async_fake) == expected
    assert async_fake.calls == sync_fake.calls
    assert [s.body for s in async_fake.requests] == [s.body for s in sync_fake.requests]


def test_s11_aprocess_with_metadata_and_failure() -> None:
    fake = scripted({"GET /users-by-id/u1/": Reply(429)})
    raw = item(IDENTIFY, metadata=METADATA)
    result = asyncio.run(aprocess(raw, transport=fake))
    assert result == process(raw, transport=scripted({"GET /users-by-id/u1/": Reply(429)}))
    assert result["statusCode"] == 429


def test_s11_aprocess_router_gives_the_same_results() -> None:
    items = [_router_item(m, metadata={"i": n}) for n, m in enumerate(SAMPLES)]
    items[0] = _router_item(IDENTIFY)  # one without metadata
    sync_fake, async_fake = user_found(), user_found()
    expected = process_router(items, transport=sync_fake)
    assert asyncio.run(aprocess_router(items, transport=async_fake)) == expected
    assert async_fake.calls == sync_fake.calls


def test_s11_aprocess_router_empty_batch() -> None:
    fake = scripted()
    assert asyncio.run(aprocess_router([], transport=fake)) == []
    assert fake.requests == []


def test_s11_public_api_is_exported() -> None:
    for name in ("process", "process_router", "aprocess", "aprocess_router", "plan"):
        assert name in pipeline.__all__
        assert callable(getattr(pipeline, name))


# --- warnings -----------------------------------------------------------------------------


def test_s11_warnings_are_logged_not_in_envelopes(caplog: pytest.LogCaptureFixture) -> None:
    message = identify(userId="u1", traits={"gender": "robot", "status": "lead"})
    with caplog.at_level(logging.WARNING):
        result = run(message)
        [routed] = process_router([_router_item(message)], transport=scripted())
    assert set(result) == {"output", "statusCode"}
    assert set(routed) == {"batchedRequest", "batched", "statusCode", "destination"}
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("robot" in m for m in messages)
    assert any("lead" in m for m in messages)


def test_s11_track_timestamp_warning_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = run(track(userId="u1", event="E", timestamp="someday"), user_found())
    assert result["statusCode"] == 200
    assert "timestamp" not in result["output"]["body"]["JSON"]
    assert any("someday" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
