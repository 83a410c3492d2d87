"""`usercom serve`'s transformer API (DELIVERY §6, SPEC §11): rudder-transformer's envelopes.

The service answers exactly what the library (`pipeline.process`, `process_router`) answers
for the same items against an identical sandbox; its calls go to --base-url, the envelopes
keep the real User.com URLs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import API_KEY, Running, options, sandbox_state, service_in_thread

import pipeline
from pipeline.sandbox import SandboxOptions, serve_in_thread

CONFIG = {"apiKey": API_KEY, "appSubdomain": "acme"}
DESTINATION = {"ID": "dest-1", "Config": CONFIG}
MESSAGES: list[dict[str, Any]] = [
    {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com", "plan": "pro"}},
    {"type": "track", "userId": "nobody", "event": "Paid", "properties": {"value": 3}},
    {
        "type": "group",
        "userId": "u1",
        "groupId": "g-1",
        "traits": {"name": "Acme Ltd", "industry": "Retail"},
    },
    {"userId": "u1"},
    {"type": "screen", "userId": "u1", "name": "Home"},
]


class Forward(httpx.BaseTransport):
    """The library's calls, sent to a sandbox instead of User.com."""

    def __init__(self, origin: str) -> None:
        self.origin = httpx.URL(origin)
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url.copy_with(
            scheme=self.origin.scheme, host=self.origin.host, port=self.origin.port
        )
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        return self.inner.handle_request(
            httpx.Request(request.method, url, headers=headers, content=request.content)
        )


def items(feature: str) -> list[dict[str, Any]]:
    return [
        {
            "message": message,
            "destination": DESTINATION,
            "metadata": {"jobId": number, "feature": feature},
        }
        for number, message in enumerate(MESSAGES, start=1)
    ]


def plain(value: object) -> Any:
    return json.loads(json.dumps(value))


@pytest.fixture
def sandboxes() -> Iterator[tuple[str, str]]:
    with (
        serve_in_thread(SandboxOptions(api_key=API_KEY)) as ours,
        serve_in_thread(SandboxOptions(api_key=API_KEY)) as theirs,
    ):
        yield ours, theirs


@pytest.fixture
def service(sandboxes: tuple[str, str], tmp_path: Path) -> Iterator[Running]:
    with service_in_thread(options(tmp_path / "serve.sqlite", sandboxes[0])) as running:
        yield running


def test_the_processor_endpoint_answers_what_the_library_answers(
    service: Running, sandboxes: tuple[str, str]
) -> None:
    answer = httpx.post(f"{service.url}/v0/destinations/user", json=items("processor"))
    assert answer.status_code == 200, answer.text
    got = answer.json()
    forward = Forward(sandboxes[1])
    expected = [plain(pipeline.process(item, transport=forward)) for item in items("processor")]
    assert got == expected
    assert len(got) == len(MESSAGES)
    first = got[0]
    assert first["statusCode"] == 200
    assert first["metadata"] == {"jobId": 1, "feature": "processor"}
    request = first["output"]
    assert set(request) == {
        "version",
        "type",
        "method",
        "endpoint",
        "headers",
        "params",
        "body",
        "files",
        "userId",
    }
    assert request["endpoint"].startswith("https://acme.user.com/api/public/")
    assert set(request["body"]) == {"JSON", "JSON_ARRAY", "XML", "FORM"}
    failure = got[1]
    assert set(failure) == {"error", "statusCode", "statTags", "metadata"}
    assert failure["statTags"]["feature"] == "processor"
    assert failure["statTags"]["destType"] == "USER"
    # The lookups were made for real, in the service's sandbox (--base-url); the delivery
    # loop's probe is one more request there.
    ours, theirs = (sandbox_state(url)["request_count"] for url in sandboxes)
    assert ours == theirs + 1
    assert theirs >= 2


def test_the_router_endpoint_answers_what_the_library_answers(
    service: Running, sandboxes: tuple[str, str]
) -> None:
    body = {"destType": "USER", "input": items("router")}
    answer = httpx.post(f"{service.url}/routerTransform", json=body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert set(got) == {"output"}
    expected = plain(pipeline.process_router(items("router"), transport=Forward(sandboxes[1])))
    assert got["output"] == expected
    first = got["output"][0]
    assert first["batched"] is False
    assert first["metadata"] == [{"jobId": 1, "feature": "router"}]
    assert first["destination"] == DESTINATION
    assert "userId" not in first["batchedRequest"]
    failure = got["output"][1]
    assert failure["statTags"]["feature"] == "router"
    assert httpx.post(
        f"{service.url}/routerTransform", json={"destType": "USER", "input": []}
    ).json() == {"output": []}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/routerTransform", {"destType": "HUBSPOT", "input": []}),
        ("/routerTransform", {"destType": "USER"}),
        ("/routerTransform", [1]),
        ("/v0/destinations/user", {"message": {}}),
    ],
)
def test_a_malformed_transformer_request_is_400(service: Running, path: str, body: Any) -> None:
    answer = httpx.post(f"{service.url}{path}", json=body)
    assert answer.status_code == 400
    assert set(answer.json()) == {"code", "message"}


def test_the_transformer_token_is_required_when_set(
    sandboxes: tuple[str, str], tmp_path: Path
) -> None:
    opts = options(tmp_path / "serve.sqlite", sandboxes[0], transformer_token="t0ken")
    with service_in_thread(opts) as running:
        url = f"{running.url}/v0/destinations/user"
        assert httpx.post(url, json=[]).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(url, json=[], headers=wrong).status_code == 401
        right = {"Authorization": "Bearer t0ken"}
        answer = httpx.post(url, json=items("processor")[:1], headers=right)
        assert answer.status_code == 200
        assert answer.json()[0]["statusCode"] == 200


def test_the_transformer_api_needs_no_write_key_and_has_the_body_limit(service: Running) -> None:
    assert httpx.post(f"{service.url}/v0/destinations/user", json=[]).json() == []
    huge = b"[" + b" " * (5 * 1024 * 1024) + b"]"
    answer = httpx.post(f"{service.url}/v0/destinations/user", content=huge)
    assert answer.status_code == 413
