"""An identifier too long for a URL is a bad event, not an `httpx.InvalidURL` (SPEC §10).

httpx refuses URLs over 65,536 characters; the core refuses any identifier whose encoded form
could push a request past that, before a request is built, on every path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ABORTED,
    INSTRUMENTATION,
    assert_failure,
    config,
    group,
    identify,
    ok,
    page,
    run,
    scripted,
    track,
)
from serve_helpers import (
    API_KEY,
    SUBDOMAIN,
    Running,
    ledger_rows,
    options,
    post,
    service_in_thread,
    wait_until,
)
from typer.testing import CliRunner

from pipeline import Destination
from pipeline.cli.app import app
from pipeline.core.calls import ORIGIN_MAX, SUBJECT_ENCODED_MAX
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.testing import Reply

LONG = "u" * 70_000
TOO_LONG = "userId is too long to be sent in a URL (70000 characters"
# Under the 32 KB limit of one event in send and serve, but 84,000 characters once encoded.
WIDE = "\U0001f600" * 7_000
WIDE_TOO_LONG = "userId is too long to be sent in a URL (7000 characters"

PAGE_CONTEXT = {"page": {"url": "https://x.io/a", "path": "/a"}}
CASES: list[Any] = [
    pytest.param(identify(userId=LONG), "userId", id="identify-userId"),
    pytest.param(track(userId=LONG, event="Viewed"), "userId", id="track-userId"),
    pytest.param(
        page(userId=LONG, context=PAGE_CONTEXT, timestamp="2024-05-01T10:00:00Z"),
        "userId",
        id="page-userId",
    ),
    pytest.param(
        identify(userId="u1", traits={"email": LONG}, integrations={"user": {"lookup": "email"}}),
        "email",
        id="identify-email",
    ),
    pytest.param(
        identify(userId="u1", context={"externalId": [{"type": "userKey", "id": LONG}]}),
        "userKey",
        id="identify-userKey",
    ),
    pytest.param(
        identify(
            userId="u1",
            context={"traits": {"phone": LONG}},
            integrations={"user": {"lookup": "phone"}},
        ),
        "phone",
        id="identify-phone",
    ),
    pytest.param(group(userId=LONG, groupId="g1", traits={"name": "A"}), "userId", id="group-uid"),
    pytest.param(group(userId="u1", groupId=LONG, traits={"name": "A"}), "groupId", id="group-gid"),
]


@pytest.mark.parametrize(("message", "field"), CASES)
def test_process_refuses_an_identifier_too_long_for_a_url(message: Any, field: str) -> None:
    fake = scripted({"GET /users-by-id/*": ok()})
    result = run(message, fake)
    assert_failure(result, 400, INSTRUMENTATION)
    assert result["error"].startswith(f"{field} is too long to be sent in a URL (70000 characters")
    assert fake.requests == []


def test_multibyte_characters_count_as_they_are_encoded() -> None:
    # 6,000 characters, 72,000 once percent-encoded (4 UTF-8 bytes, 3 characters each).
    result = run(identify(userId="\U0001f600" * 6_000))
    assert_failure(result, 400, INSTRUMENTATION)
    assert result["error"].startswith("userId is too long to be sent in a URL (6000 characters")


def test_the_longest_identifier_allowed_is_sent() -> None:
    fake = scripted({"GET /users-by-id/*": ok({"id": 7})})
    result = run(identify(userId="u" * SUBJECT_ENCODED_MAX), fake)
    assert result["statusCode"] == 200, result.get("error")
    assert len(fake.requests) == 1


def test_a_user_id_from_user_com_too_long_for_a_url_is_an_aborted_answer() -> None:
    fake = scripted({"GET /users-by-id/*": ok({"id": LONG})})
    result = run(identify(userId="u1"), fake)
    assert_failure(result, 400, ABORTED)
    assert "User.com answered a user with an id too long to be sent in a URL" in result["error"]


def test_a_company_id_from_user_com_too_long_for_a_url_is_an_aborted_answer() -> None:
    fake = scripted(
        {
            "GET /users-by-id/*": ok({"id": 1}),
            "GET /companies-by-id/*": Reply(404, {"detail": "Not found."}),
            "POST /companies/": Reply(201, {"id": LONG}),
        }
    )
    result = run(group(userId="u1", groupId="g1", traits={"name": "A"}), fake)
    assert_failure(result, 400, ABORTED)
    assert "User.com answered a company with an id too long to be sent in a URL" in result["error"]


def test_destination_process_and_deliver_reject_it() -> None:
    fake = scripted()
    destination = Destination(config(), transport=fake)
    message = track(userId=LONG, event="Viewed", messageId="m-long")
    processed = destination.process(message)
    assert processed["statusCode"] == 400
    assert processed["error"].startswith(TOO_LONG)
    outcome = destination.deliver(message)
    assert outcome.status == "rejected"
    assert (outcome.error or "").startswith(TOO_LONG)
    assert fake.requests == []


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        yield url


def test_send_rejects_it_and_delivers_the_rest(sandbox: str, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"apiKey": API_KEY, "appSubdomain": SUBDOMAIN}), encoding="utf-8")
    events = tmp_path / "events.jsonl"
    lines = [
        {"type": "track", "messageId": "m-long", "userId": WIDE, "event": "Viewed"},
        {"type": "identify", "messageId": "m-ok", "userId": "ok1"},
    ]
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    events.write_text(text, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["send", str(events), "--config", str(cfg), "--base-url", sandbox, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1, result.output
    found = {o["key"]: o for o in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert found[f"{SUBDOMAIN}:m-long"]["status"] == "rejected"
    assert found[f"{SUBDOMAIN}:m-long"]["error"].startswith(WIDE_TOO_LONG)
    assert found[f"{SUBDOMAIN}:m-ok"]["status"] == "delivered"


def test_serve_rejects_it_and_keeps_delivering(sandbox: str, tmp_path: Path) -> None:
    ledger = tmp_path / "serve.sqlite"
    with service_in_thread(options(ledger, sandbox)) as running:
        service: Running = running
        batch = {
            "batch": [
                {"type": "track", "messageId": "m-long", "userId": WIDE, "event": "Viewed"},
                {"type": "identify", "messageId": "m-ok", "userId": "ok1"},
            ]
        }
        content = json.dumps(batch, ensure_ascii=False).encode()
        answer = post(
            service.url, "/v1/batch", content=content, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 200, answer.text

        def rows() -> dict[str, Any]:
            return {row.key: row for row in ledger_rows(ledger)}

        assert wait_until(lambda: rows()[f"{SUBDOMAIN}:m-ok"].status == "delivered")
        long_row = rows()[f"{SUBDOMAIN}:m-long"]
        assert long_row.status == "rejected"
        assert (long_row.error or "").startswith(WIDE_TOO_LONG)


def test_a_destination_base_url_too_long_for_the_bound_is_refused_when_built() -> None:
    # The bound on identifiers leaves room for an origin of ORIGIN_MAX characters, no more.
    fits = "http://" + "a" * (ORIGIN_MAX - len("http://"))
    fake = scripted({"POST /users-by-id/*": ok({"id": 1})})
    longest = "u" * SUBJECT_ENCODED_MAX
    with Destination(config(), base_url=fits, transport=fake) as destination:
        message = track(userId=longest, event="Viewed", messageId="m-longest")
        assert destination.deliver(message).status == "delivered"
    with pytest.raises(ValueError, match=f"base_url is {ORIGIN_MAX + 1} characters, over "):
        Destination(config(), base_url=fits + "a")
