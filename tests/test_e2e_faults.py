"""End to end over loopback with injected faults: 5xx, 429, dropped connections, lost answers."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

import pytest
from e2e_helpers import (
    API_KEY,
    REAL_API,
    Delivered,
    deliver_lines,
    expected_memberships,
    expected_pages,
    expected_tracks,
    key_of,
    lines_of,
    mix_lines,
    page_occurrences,
    sandbox_state,
    texts,
    track_occurrences,
)

from pipeline.delivery import DeliveryOptions
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.sandbox.options import ForcedStatus

RETRYING = DeliveryOptions(
    concurrency=8, max_attempts=12, max_seconds=15, backoff_initial=0.01, backoff_max=0.05
)


def answers(run: Delivered) -> Counter[str]:
    """How often each answer (a status, or ``connection``) appears in the request logs."""
    return Counter(request.rsplit(" -> ", 1)[1] for o in run.outcomes for request in texts(o))


def route(request: str) -> str:
    """What a logged request wrote or read: ``events`` for an event write on either route
    (``POST /events/`` or a user's own ``POST /users-by-id/<cid>/events/``), else the first
    segment of its path (``users``, ``users-by-id``, ``companies``, ...)."""
    path = request.split(" ")[1].removeprefix(REAL_API)
    return "events" if path.endswith("events/") else path.split("/")[0]


def lost_event_write(request: str) -> bool:
    return (
        request.startswith("POST ")
        and request.endswith(" -> connection")
        and (route(request) == "events")
    )


def test_seeded_faults_lose_nothing_and_create_nobody_twice() -> None:
    lines = mix_lines(40)  # 368 events; company-1 gets two members (users 5 and 40)
    faults = SandboxOptions(error_rate=0.05, throttle_rate=0.03, drop_rate=0.01, seed=2024)
    with serve_in_thread(faults) as url:
        run = deliver_lines(lines, url, RETRYING)
        state = sandbox_state(url)

    assert run.statuses() == {"delivered": len(lines)}, [
        o for o in run.outcomes if o.status != "delivered"
    ]
    # Faults really happened and were retried.
    seen = answers(run)
    assert seen["429"] > 0, seen
    assert seen["500"] + seen["502"] + seen["503"] > 0, seen
    assert sum(o.attempts for o in run.outcomes) > len(lines)
    assert state["request_count"] >= run.summary.api_calls - seen["connection"]

    custom_ids = [user["custom_id"] for user in state["users"]]
    assert len(set(custom_ids)) == len(custom_ids) == 40
    company_ids = [company["custom_id"] for company in state["companies"]]
    assert len(set(company_ids)) == len(company_ids) == 7
    assert {
        c["custom_id"]: {u["custom_id"] for u in state["users"] if u["id"] in c["employees"]}
        for c in state["companies"]
    } == expected_memberships(lines)
    # Every fault here happens before the write: each event is stored exactly once.
    assert track_occurrences(state) == expected_tracks(lines)
    assert page_occurrences(state) == expected_pages(lines)


def test_dropped_connections_are_retried_until_delivered() -> None:
    lines = mix_lines(5)
    # A group retry needs two or three requests in a row to get through: enough attempts
    # that a cluster of drops in the seeded sequence cannot exhaust them.
    patient = DeliveryOptions(
        concurrency=8, max_attempts=30, max_seconds=15, backoff_initial=0.01, backoff_max=0.02
    )
    with serve_in_thread(SandboxOptions(drop_rate=0.15, seed=8)) as url:
        run = deliver_lines(lines, url, patient)
        state = sandbox_state(url)

    assert run.statuses() == {"delivered": len(lines)}
    assert answers(run)["connection"] > 0
    retried = [o for o in run.outcomes if o.attempts > 1]
    assert retried
    for outcome in retried:
        assert any(r.endswith(" -> connection") for r in texts(outcome)), outcome
    assert len(state["users"]) == 5
    assert track_occurrences(state) == expected_tracks(lines)
    assert page_occurrences(state) == expected_pages(lines)


def test_lost_responses_duplicate_only_the_writes_they_hit_and_are_counted() -> None:
    lines = mix_lines(20)
    with serve_in_thread(SandboxOptions(lost_response_rate=0.1, seed=99)) as url:
        run = deliver_lines(lines, url, RETRYING)
        state = sandbox_state(url)

    assert run.statuses() == {"delivered": len(lines)}
    # Users and companies are written idempotently: a lost answer never doubles them.
    custom_ids = [user["custom_id"] for user in state["users"]]
    assert len(set(custom_ids)) == len(custom_ids) == 20
    company_ids = [company["custom_id"] for company in state["companies"]]
    assert len(set(company_ids)) == len(company_ids) == 4
    assert {
        c["custom_id"]: {u["custom_id"] for u in state["users"] if u["id"] in c["employees"]}
        for c in state["companies"]
    } == expected_memberships(lines)

    # Events and site views are not idempotent: each lost answer adds exactly one copy.
    by_key = run.by_key()
    lost_tracks: Counter[tuple[str, str, int]] = Counter()
    lost_pages: Counter[tuple[str, str]] = Counter()
    for line in lines:
        event: dict[str, Any] = json.loads(line)
        requests = texts(by_key[key_of(event["messageId"])])
        lost_events = sum(map(lost_event_write, requests))
        lost_views = requests.count(f"POST {REAL_API}site-views/ -> connection")
        if event["type"] == "track":
            name = "order_completed" if event["event"] == "Order Completed" else event["event"]
            lost_tracks[(event["userId"], name, event["properties"]["position"])] += lost_events
        elif event["type"] == "page":
            lost_pages[(event["userId"], event["context"]["page"]["path"])] += lost_views
        else:
            assert lost_events == lost_views == 0, requests

    assert lost_tracks.total() + lost_pages.total() > 0, "no event write answer was lost"
    assert track_occurrences(state) == expected_tracks(lines) + lost_tracks
    assert page_occurrences(state) == expected_pages(lines) + lost_pages
    assert len(state["events"]) == expected_tracks(lines).total() + lost_tracks.total()
    assert len(state["site_views"]) == expected_pages(lines).total() + lost_pages.total()


def test_lost_answers_of_user_and_company_writes_never_create_them_twice() -> None:
    events: list[dict[str, Any]] = []
    for n in range(10):
        user = f"lost-{n}"
        events += [
            {"type": "identify", "messageId": f"{user}-id", "userId": user},
            {
                "type": "group",
                "messageId": f"{user}-group",
                "userId": user,
                "groupId": f"firm-{n % 2}",
                "traits": {"name": f"Firm {n % 2}"},
            },
            {
                "type": "track",
                "messageId": f"{user}-track",
                "userId": user,
                "event": "E",
                "properties": {"position": 0},
            },
        ]
    patient = DeliveryOptions(
        concurrency=8, max_attempts=40, max_seconds=15, backoff_initial=0.01, backoff_max=0.02
    )
    with serve_in_thread(SandboxOptions(lost_response_rate=0.5, seed=41)) as url:
        run = deliver_lines(lines_of(events), url, patient)
        state = sandbox_state(url)

    assert run.statuses() == {"delivered": len(events)}
    lost = Counter(
        route(request)
        for outcome in run.outcomes
        for request in texts(outcome)
        if request.endswith(" -> connection")
    )
    assert lost["users"] > 0, lost
    assert lost["companies"] > 0, lost
    custom_ids = [user["custom_id"] for user in state["users"]]
    assert sorted(custom_ids) == sorted(f"lost-{n}" for n in range(10))
    assert sorted(c["custom_id"] for c in state["companies"]) == ["firm-0", "firm-1"]
    assert {
        c["custom_id"]: {u["custom_id"] for u in state["users"] if u["id"] in c["employees"]}
        for c in state["companies"]
    } == {f"firm-{k}": {f"lost-{n}" for n in range(k, 10, 2)} for k in (0, 1)}
    assert len(state["events"]) == 10 + lost["events"]


def test_client_rate_limit_keeps_under_the_sandbox_token_bucket() -> None:
    lines = mix_lines(3)  # 27 events: 27 writes, and a lookup of each user for its site views
    options = DeliveryOptions(
        concurrency=8, rate=12, max_attempts=1, backoff_initial=0.01, backoff_max=0.05
    )
    # Unthrottled, 30 requests at once would overflow the sandbox's bucket of 20.
    with serve_in_thread(SandboxOptions(rate_limit_rps=20, seed=3)) as url:
        run = deliver_lines(lines, url, options)
        state = sandbox_state(url)

    assert run.statuses() == {"delivered": len(lines)}, answers(run)
    assert "429" not in answers(run)
    # One write per event, one lookup per user (a site view needs the user's key), and the
    # probe the run starts with (not an event's API call).
    assert run.summary.api_calls == len(lines) + 3
    assert state["request_count"] == run.summary.api_calls + 1
    # At most 12 requests a second (even allowing a burst of 12 at the start).
    assert run.summary.seconds >= (run.summary.api_calls - 12) / 12 * 0.9


def test_only_retryable_failures_are_retried_and_attempts_are_bounded() -> None:
    events: list[dict[str, Any]] = [
        {"type": "identify", "messageId": "ok", "userId": "u1", "traits": {"email": "u1@x.io"}},
        {"type": "track", "messageId": "t1", "userId": "u1", "event": "E", "properties": {}},
        # u1's track ends failed, so its later page is held, never attempted (DELIVERY §2).
        {
            "type": "page",
            "messageId": "p1",
            "userId": "u1",
            "timestamp": "2024-05-01T10:00:00Z",
            "context": {"page": {"url": "https://x.io/", "path": "/"}},
        },
        {"type": "identify", "messageId": "ok2", "userId": "u2", "traits": {"email": "u2@x.io"}},
        {
            "type": "page",
            "messageId": "p2",
            "userId": "u2",
            "timestamp": "2024-05-01T10:00:00Z",
            "context": {"page": {"url": "https://x.io/", "path": "/"}},
        },
    ]
    forced = {"users-by-id-events-create": 503, "site-views-create": 400}
    options = DeliveryOptions(concurrency=2, max_attempts=3, backoff_initial=0.01, backoff_max=0.02)
    with serve_in_thread(SandboxOptions(forced_status=forced, seed=5)) as url:
        run = deliver_lines(lines_of(events), url, options)
        state = sandbox_state(url)

    outcomes = run.by_key()
    assert outcomes[key_of("ok")].status == outcomes[key_of("ok2")].status == "delivered"
    track, held, page = outcomes[key_of("t1")], outcomes[key_of("p1")], outcomes[key_of("p2")]
    assert (track.status, track.attempts) == ("failed", 3)
    assert texts(track) == (f"POST {REAL_API}users-by-id/u1/events/ -> 503",) * 3
    assert track.error is not None
    assert "503" in track.error
    assert "retry later" in track.error
    assert (held.status, held.attempts, texts(held)) == ("held", 0, ())
    assert held.error is not None
    assert key_of("t1") in held.error
    assert (page.status, page.attempts) == ("rejected", 1)
    assert texts(page) == (  # the lookup gives the user key a site view needs
        f"GET {REAL_API}users-by-id/u2/ -> 200",
        f"POST {REAL_API}site-views/ -> 400",
    )
    assert page.error is not None
    assert "400" in page.error
    assert not run.summary.all_delivered
    assert run.summary.fault is None
    assert run.summary.counts == {"delivered": 2, "failed": 1, "held": 1, "rejected": 1}
    assert state["events"] == []
    assert state["site_views"] == []


@pytest.mark.parametrize("probe", [True, False])
def test_a_wrong_api_key_stops_the_run_at_once_and_is_never_shown(probe: bool) -> None:
    lines = mix_lines(1)
    options = dataclasses.replace(RETRYING, probe=probe)
    with serve_in_thread(SandboxOptions(api_key="the-right-key-0123456789", seed=6)) as url:
        run = deliver_lines(lines, url, options)
        state = sandbox_state(url)

    # A refused key is a fault of the run, not of an event: nothing is rejected (DELIVERY §3).
    fault = run.summary.fault
    assert fault is not None
    assert "refused the API key (401)" in fault
    assert API_KEY not in fault
    assert API_KEY[8:40] not in fault
    assert state["users"] == state["events"] == state["site_views"] == []
    assert state["request_count"] == 1  # the probe, or the first event's request: no retry
    if probe:
        # The probe is refused: the run stops before any event; nothing is filed.
        assert run.outcomes == []
        assert run.summary.api_calls == 0
        return
    # Without the probe, the first request is refused and the run stops there: that event and
    # the later ones stay pending, to be delivered when the key is fixed.
    assert run.statuses() == {"pending": len(lines)}
    assert run.summary.api_calls == 1
    first, *rest = sorted(run.outcomes, key=lambda o: o.position)
    assert first.attempts == 1  # an auth failure is not retried
    assert len(texts(first)) == 1
    assert texts(first)[0].endswith(" -> 401")
    assert all((o.attempts, texts(o)) == (0, ()) for o in rest)
    for outcome in run.outcomes:
        assert outcome.error is None or API_KEY not in outcome.error
        assert API_KEY not in repr(outcome)


def test_a_429_is_sent_again_after_retry_after_without_costing_an_attempt() -> None:
    events: list[dict[str, Any]] = [
        {"type": "identify", "messageId": "id", "userId": "slow", "traits": {"email": "s@x.io"}},
        {"type": "track", "messageId": "tr", "userId": "slow", "event": "E", "properties": {}},
    ]
    options = DeliveryOptions(concurrency=1, max_attempts=2, backoff_initial=0.01, backoff_max=0.02)
    throttled = ForcedStatus("users-by-id-events-create", 429, times=2)
    with serve_in_thread(SandboxOptions(forced=(throttled,), seed=8)) as url:
        run = deliver_lines(lines_of(events), url, options)
        state = sandbox_state(url)

    track = run.by_key()[key_of("tr")]
    assert (track.status, track.attempts) == ("delivered", 1)
    write = f"POST {REAL_API}users-by-id/slow/events/"
    assert texts(track) == (f"{write} -> 429", f"{write} -> 429", f"{write} -> 201")
    assert len(state["events"]) == 1
    # The sandbox says Retry-After: 1 each time; the 10 ms backoff must not resend sooner.
    assert run.summary.seconds >= 2.0


def test_retries_after_a_429_wait_for_retry_after_and_are_bounded() -> None:
    events: list[dict[str, Any]] = [
        {"type": "identify", "messageId": "id", "userId": "slow", "traits": {"email": "s@x.io"}},
        {"type": "track", "messageId": "tr", "userId": "slow", "event": "E", "properties": {}},
    ]
    # One resend per attempt: a 429 that outlasts it costs the attempt.
    options = DeliveryOptions(
        concurrency=1, max_attempts=2, backoff_initial=0.01, backoff_max=0.02, max_resends=1
    )
    forced = {"users-by-id-events-create": 429}
    with serve_in_thread(SandboxOptions(forced_status=forced, seed=8)) as url:
        run = deliver_lines(lines_of(events), url, options)

    track = run.by_key()[key_of("tr")]
    assert (track.status, track.attempts) == ("failed", 2)
    assert texts(track) == (f"POST {REAL_API}users-by-id/slow/events/ -> 429",) * 4
    assert track.error is not None
    assert "throttling" in track.error
    # Retry-After: 1 before each of the 3 requests after the first.
    assert run.summary.seconds >= 3.0
