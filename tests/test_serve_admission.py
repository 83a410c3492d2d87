"""`usercom serve` admission rules (issue 13 items 7, 12; issue 14 item 5): a cap on events per
request, one rule for a messageId repeated with other content, a page without `timestamp`.

The service runs in a thread in front of a sandbox, both on loopback sockets.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from serve_helpers import (
    SUBDOMAIN,
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

from pipeline.delivery.ledger import Ledger
from pipeline.serve import ServeOptions


def test_the_default_cap_is_10000_events_per_request(ledger: Path) -> None:
    assert options(ledger, None).max_events == 10_000
    assert ServeOptions.__dataclass_fields__["max_events"].default == 10_000


@pytest.mark.parametrize("path", ["/v1/batch", "/webhook"])
def test_a_request_over_the_event_cap_is_413_and_stores_nothing(
    sandbox: str, ledger: Path, path: str
) -> None:
    with service_in_thread(options(ledger, sandbox, max_events=20)) as service:
        events = [track("u1", n) for n in range(21)]
        answer = post(service.url, path, {"batch": events} if path == "/v1/batch" else events)
        assert answer.status_code == 413
        assert answer.json() == {
            "code": "too_many_events",
            "message": "the request holds 21 events, over the limit of 20 per request: "
            "send smaller batches",
        }
        assert sum(ledger_counts(ledger).values()) == 0
        within = post(
            service.url, path, {"batch": events[:20]} if path == "/v1/batch" else events[:20]
        )
        assert within.status_code == 200, within.text
        assert within.json()["events"] == 20


def test_a_later_version_of_a_queued_event_is_rejected_and_the_first_kept(
    sandbox: str, ledger: Path
) -> None:
    # A refused key keeps delivery paused, so the first version stays queued.
    raw = {"apiKey": "k" * 64, "appSubdomain": SUBDOMAIN}
    with service_in_thread(options(ledger, sandbox, raw=raw)) as service:
        first = track("u1", 1)
        later = {**first, "properties": {"position": 2}}
        assert post(service.url, "/v1/track", first).json()["rejected"] == 0
        answer = post(service.url, "/v1/track", later)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"success": True, "events": 1, "duplicates": 0, "rejected": 1}
        again = post(service.url, "/v1/track", later)  # the client's retry of it: one event
        assert again.json() == {"success": True, "events": 1, "duplicates": 1, "rejected": 0}
        rows = {row.key: row for row in ledger_rows(ledger)}
        kept = rows[f"{SUBDOMAIN}:u1-track-1"]
        assert kept.status == "pending"
        assert json.loads(kept.line)["properties"] == {"position": 1}
        (repeat,) = [row for key, row in rows.items() if key.startswith(f"{SUBDOMAIN}:u1-track-1#")]
        assert repeat.status == "rejected"
        assert repeat.error == f"messageId repeated with other content at position {kept.position}"
        assert health(service.url)["queued"] == 1
        metrics = httpx.get(f"{service.url}/metrics", timeout=10).text
        assert 'usercom_events_repeated_total{app="acme"} 1.0' in metrics
        assert 'usercom_events_rejected_total{app="acme",type="track"} 1.0' in metrics


def test_within_one_batch_only_the_first_version_is_delivered(sandbox: str, ledger: Path) -> None:
    with service_in_thread(options(ledger, sandbox)) as service:
        first = track("u2", 1)
        batch = [identify("u2"), first, {**first, "properties": {"position": 2}}]
        answer = post(service.url, "/v1/batch", {"batch": batch})
        assert answer.json() == {"success": True, "events": 3, "duplicates": 0, "rejected": 1}
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2)
        assert wait_until(lambda: health(service.url)["queued"] == 0)
        positions = [event["data"]["position"] for event in sandbox_state(sandbox)["events"]]
        assert positions == [1]


def test_an_event_edited_after_delivery_is_delivered_again_as_send_does(
    sandbox: str, ledger: Path
) -> None:
    with service_in_thread(options(ledger, sandbox)) as service:
        first = track("u3", 1)
        assert post(service.url, "/v1/batch", {"batch": [identify("u3"), first]}).is_success
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2)
        edited = {**first, "properties": {"position": 2}}
        assert post(service.url, "/v1/track", edited).json()["rejected"] == 0
        assert wait_until(lambda: len(sandbox_state(sandbox)["events"]) == 2)
        positions = [event["data"]["position"] for event in sandbox_state(sandbox)["events"]]
        assert positions == [1, 2]


def page(user: str, message_id: str, **times: str) -> dict[str, object]:
    return {
        "messageId": message_id,
        "userId": user,
        "context": {"page": {"url": "https://shop.example.com/p/1", "path": "/p/1"}},
        **times,
    }


def test_a_page_without_timestamp_gets_one_at_ingest_and_is_delivered(
    sandbox: str, ledger: Path
) -> None:
    with service_in_thread(options(ledger, sandbox)) as service:
        assert post(service.url, "/v1/identify", identify("u4")).is_success
        bare = page("u4", "p-bare")
        skewed = page(
            "u4",
            "p-skewed",
            originalTimestamp="2024-05-01T10:00:00.000Z",
            sentAt="2024-05-01T10:00:30.000Z",  # the client's clock: 30 s after the event
        )
        answer = post(service.url, "/v1/batch", {"batch": [{**bare, "type": "page"}]})
        assert answer.json()["rejected"] == 0
        assert post(service.url, "/v1/page", skewed).json()["rejected"] == 0
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 3), ledger_rows(ledger)
        lines = {row.key: json.loads(row.line) for row in ledger_rows(ledger)}
        stored_bare, stored_skewed = lines[f"{SUBDOMAIN}:p-bare"], lines[f"{SUBDOMAIN}:p-skewed"]
        assert stored_bare["timestamp"] == stored_bare["receivedAt"]
        received = datetime.fromisoformat(stored_skewed["receivedAt"])
        expected = received - timedelta(seconds=30)
        assert datetime.fromisoformat(stored_skewed["timestamp"]) == expected
        views = sandbox_state(sandbox)["site_views"]
        assert sorted(view["timestamp"] for view in views) == sorted(
            [stored_bare["timestamp"], stored_skewed["timestamp"]]
        )


def test_a_later_version_requeued_is_rejected_again_never_delivered(
    sandbox: str, ledger: Path
) -> None:
    first = track("u5", 1)
    batch = [identify("u5"), first, {**first, "properties": {"position": 2}}]
    with service_in_thread(options(ledger, sandbox)) as service:
        assert post(service.url, "/v1/batch", {"batch": batch}).json()["rejected"] == 1
        assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2)
    with Ledger.open_writer(ledger, SUBDOMAIN) as book:  # `usercom requeue --rejected`
        (repeat,) = [row for row in book.rows() if "#repeat-" in row.key]
        assert book.requeue([repeat.key], rejected=True) == 1
    with service_in_thread(options(ledger, sandbox)) as service:
        assert wait_until(lambda: health(service.url)["queued"] == 0)
        again = {row.key: row for row in ledger_rows(ledger)}[repeat.key]
        assert again.status == "rejected"
        assert again.error == repeat.error
    positions = [event["data"]["position"] for event in sandbox_state(sandbox)["events"]]
    assert positions == [1]
