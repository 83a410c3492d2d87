"""`usercom serve` ingest (DELIVERY §6): auth, limits, gzip, keys, and 200 only once stored.

The service runs in a thread in front of a sandbox, both on loopback sockets.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import (
    SUBDOMAIN,
    WRITE_KEY,
    Running,
    auth,
    health,
    identify,
    ledger_counts,
    ledger_rows,
    options,
    post,
    sandbox_state,
    service_in_thread,
    track,
    wait_until,
)

from pipeline.delivery.incoming import canonical
from pipeline.serve.logs import LOGGER

MB = 1024 * 1024


@pytest.fixture
def service(sandbox: str, ledger: Path) -> Iterator[Running]:
    with service_in_thread(options(ledger, sandbox)) as running:
        yield running


def nothing_stored(ledger: Path) -> bool:
    return sum(ledger_counts(ledger).values()) == 0


def test_a_missing_or_wrong_write_key_is_401_with_code_and_message(
    service: Running, ledger: Path
) -> None:
    for key in (None, "wrong-key"):
        answer = post(service.url, "/v1/track", track("u1", 1), key=key)
        assert answer.status_code == 401
        body = answer.json()
        assert set(body) == {"code", "message"}
        assert body["code"] == "unauthorized"
    answer = post(
        service.url,
        "/v1/batch",
        {"batch": [track("u1", 1)]},
        key=None,
        headers={"Authorization": "Bearer " + WRITE_KEY},
    )
    assert answer.status_code == 401
    assert nothing_stored(ledger)


@pytest.mark.parametrize(
    ("path", "content", "words"),
    [
        ("/v1/batch", b"{not json", "not JSON"),
        ("/v1/batch", b"", "empty"),
        ("/v1/batch", b'{"batch": []}', "no events"),
        ("/v1/batch", b'{"events": [{"type": "track"}]}', "batch"),
        ("/v1/track", b"[1, 2]", "object"),
        ("/webhook", b"[]", "no events"),
        ("/webhook", b'"text"', "array"),
    ],
)
def test_a_body_that_is_not_json_or_has_no_events_is_400_and_stores_nothing(
    service: Running, ledger: Path, path: str, content: bytes, words: str
) -> None:
    answer = post(service.url, path, content=content)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_request"
    assert words in answer.json()["message"]
    assert nothing_stored(ledger)


def test_a_body_over_4_mb_is_413_and_stores_nothing(service: Running, ledger: Path) -> None:
    events = [track("u1", i, properties={"pad": "x" * 1000, "position": i}) for i in range(4500)]
    body = json.dumps({"batch": events}).encode()
    assert len(body) > 4 * MB
    answer = post(service.url, "/v1/batch", content=body)
    assert answer.status_code == 413
    assert answer.json()["code"] == "payload_too_large"
    assert nothing_stored(ledger)


def test_a_gzip_bomb_is_cut_off_at_4_mb_and_answered_413(service: Running, ledger: Path) -> None:
    inner = b'{"batch": [' + b" " * (64 * MB) + b"]}"
    bomb = gzip.compress(inner, compresslevel=9)
    assert len(bomb) < MB
    answer = post(service.url, "/v1/batch", content=bomb, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 413
    assert nothing_stored(ledger)


def raw_exchange(url: str, head: bytes, body: bytes) -> bytes:
    """Send the request head and the whole body before reading anything, then read."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_an_oversize_body_sent_before_reading_still_gets_its_413(
    service: Running, ledger: Path
) -> None:
    body = b'{"batch": [' + b" " * (6 * MB) + b"]}"
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: test\r\nAuthorization: {auth()['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = raw_exchange(service.url, head, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"payload_too_large" in answer
    assert nothing_stored(ledger)


def test_gzip_bodies_are_accepted(service: Running, sandbox: str, ledger: Path) -> None:
    body = gzip.compress(json.dumps({"batch": [identify("gz-1"), track("gz-1", 1)]}).encode())
    answer = post(service.url, "/v1/batch", content=body, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["events"] == 2
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2)
    assert [u["custom_id"] for u in sandbox_state(sandbox)["users"]] == ["gz-1"]


def test_an_event_over_32_kb_or_not_an_object_is_rejected_and_its_batch_kept(
    service: Running, sandbox: str, ledger: Path
) -> None:
    big = track("u1", 2, properties={"position": 2, "blob": "y" * (33 * 1024)})
    batch = [identify("u1"), big, "not an event", track("u1", 3)]
    answer = post(service.url, "/v1/batch", {"batch": batch})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "events": 4, "duplicates": 0, "rejected": 2}
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2)
    rows = {row.key: row for row in ledger_rows(ledger)}
    assert rows[f"{SUBDOMAIN}:u1-track-2"].status == "rejected"
    assert "32 KB" in (rows[f"{SUBDOMAIN}:u1-track-2"].error or "")
    odd = [row for row in rows.values() if row.key.startswith(f"{SUBDOMAIN}:sha256:")]
    assert len(odd) == 1
    assert odd[0].status == "rejected"
    assert "not a JSON object" in (odd[0].error or "")
    assert tracks_of(sandbox) == [3]


def test_an_event_rejected_on_arrival_is_logged_with_its_position_like_other_rejections(
    service: Running, ledger: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big = track("u1", 2, properties={"blob": "y" * (33 * 1024)})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        answer = post(service.url, "/v1/batch", {"batch": [identify("u1"), big, "not an event"]})
    assert answer.status_code == 200, answer.text
    positions = {row.key: row.position for row in ledger_rows(ledger)}
    rejected = [r.getMessage() for r in caplog.records if "event=event_rejected" in r.getMessage()]
    assert len(rejected) == 2, rejected
    big_line = next(line for line in rejected if f"id={SUBDOMAIN}:u1-track-2 " in line)
    assert f" position={positions[f'{SUBDOMAIN}:u1-track-2']} " in big_line, big_line
    assert all(" position=" in line for line in rejected), rejected


def tracks_of(sandbox: str) -> list[int]:
    return [event["data"]["position"] for event in sandbox_state(sandbox)["events"]]


def test_without_message_id_the_content_key_makes_a_retry_one_event(
    service: Running, ledger: Path, sandbox: str
) -> None:
    event: dict[str, Any] = {
        "userId": "u9",
        "event": "Product Viewed",
        "properties": {"position": 7},
        "timestamp": 1_714_557_600,
    }
    first = post(service.url, "/v1/track", event)
    again = post(service.url, "/v1/track", event)
    assert first.json()["duplicates"] == 0
    assert again.json()["duplicates"] == 1
    rows = ledger_rows(ledger)
    assert len(rows) == 1
    # The key is the canonical JSON of the event as sent, its type from the path.
    digest = __import__("hashlib").sha256(canonical({**event, "type": "track"})).hexdigest()
    assert rows[0].key == f"{SUBDOMAIN}:sha256:{digest}"
    stored = json.loads(rows[0].line)
    assert stored["type"] == "track"
    assert stored["receivedAt"].endswith("Z")


def test_the_type_comes_from_the_path(service: Running, ledger: Path) -> None:
    event = {**identify("u5"), "type": "track", "messageId": "m-typed"}
    assert post(service.url, "/v1/identify", event).status_code == 200
    (row,) = ledger_rows(ledger)
    assert json.loads(row.line)["type"] == "identify"


def test_a_message_id_sent_again_is_one_event_even_after_delivery(
    service: Running, ledger: Path, sandbox: str
) -> None:
    assert post(service.url, "/v1/batch", {"batch": [identify("u7"), track("u7", 1)]}).is_success
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2)
    again = post(service.url, "/v1/batch", {"batch": [identify("u7"), track("u7", 1)]})
    assert again.json()["duplicates"] == 2
    assert wait_until(lambda: health(service.url)["queued"] == 0)
    assert tracks_of(sandbox) == [1]


def test_unsupported_types_are_accepted_then_rejected_at_delivery(
    service: Running, ledger: Path
) -> None:
    screen = {"userId": "u1", "messageId": "s-1", "name": "Home"}
    alias = {"userId": "u1", "previousId": "a-1", "messageId": "a-1"}
    assert post(service.url, "/v1/screen", screen).status_code == 200
    assert post(service.url, "/v1/alias", alias).status_code == 200
    assert wait_until(lambda: ledger_counts(ledger)["rejected"] == 2)
    errors = {row.key: row.error for row in ledger_rows(ledger)}
    assert all("not supported" in (error or "").lower() for error in errors.values()), errors
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'usercom_events_rejected_total{app="acme",type="screen"} 1.0' in metrics
    assert 'usercom_events_rejected_total{app="acme",type="alias"} 1.0' in metrics


def test_the_webhook_takes_one_event_or_an_array(service: Running, ledger: Path) -> None:
    assert post(service.url, "/webhook", identify("w1")).json()["events"] == 1
    answer = post(service.url, "/webhook", [track("w1", 1), track("w1", 2)])
    assert answer.json()["events"] == 2
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 3)


def test_past_max_queued_ingest_answers_503_with_retry_after(sandbox: str, ledger: Path) -> None:
    # A wrong key keeps events queued (delivery paused), so the queue only grows.
    raw = {"apiKey": "k" * 64, "appSubdomain": SUBDOMAIN}
    with service_in_thread(options(ledger, sandbox, raw=raw, max_queued=3)) as service:
        assert post(
            service.url, "/v1/batch", {"batch": [track("u", i) for i in range(3)]}
        ).is_success
        answer = post(service.url, "/v1/track", track("u", 9))
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "30"
        assert answer.json()["code"] == "overloaded"
        assert ledger_counts(ledger)["pending"] == 3


def test_a_write_key_of_another_source_is_refused(service: Running) -> None:
    assert post(service.url, "/v1/track", track("u", 1), key=WRITE_KEY + "x").status_code == 401


def test_under_the_free_disk_floor_ingest_answers_503(sandbox: str, ledger: Path) -> None:
    with service_in_thread(options(ledger, sandbox, min_free_bytes=1 << 62)) as service:
        answer = post(service.url, "/v1/track", track("u", 1))
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "60"
        assert "free" in answer.json()["message"]
    assert nothing_stored(ledger)


def test_unknown_routes_and_methods_answer_json(service: Running) -> None:
    missing = httpx.post(f"{service.url}/v2/batch", json={})
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    wrong = httpx.get(f"{service.url}/v1/batch")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"
