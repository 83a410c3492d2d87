"""End to end over loopback with injected faults: 5xx, 429, dropped connections, lost answers."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from e2e_helpers import (
    API_KEY,
    REAL_API,
    Delivered,
    deliver_lines,
    expected_memberships,
    expected_pages,
    expected_tracks,
    lines_of,
    mix_lines,
    page_occurrences,
    sandbox_state,
    track_occurrences,
)

from pipeline.delivery import DeliveryOptions
from pipeline.sandbox import SandboxOptions, serve_in_thread

RETRYING = DeliveryOptions(
    concurrency=8, max_attempts=12, max_seconds=15, backoff_initial=0.01, backoff_max=0.05
)


def answers(run: Delivered) -> Counter[str]:
    """How often each answer (a status, or ``connection``) appears in the request logs."""
    return Counter(request.rsplit(" -> ", 1)[1] for o in run.outcomes for request in o.requests)


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
        assert any(r.endswith(" -> connection") for r in outcome.requests), outcome
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
        requests = by_key[event["messageId"]].requests
        lost_events = requests.count(f"POST {REAL_API}events/ -> connection")
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
        request.split(" ")[1].removeprefix(REAL_API).split("/")[0]
        for outcome in run.outcomes
        for request in outcome.requests
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
    lines = mix_lines(3)  # 27 events, 27 requests
    options = DeliveryOptions(
        concurrency=8, rate=12, max_attempts=1, backoff_initial=0.01, backoff_max=0.05
    )
    # Unthrottled, 27 requests at once would overflow the sandbox's bucket of 20.
    with serve_in_thread(SandboxOptions(rate_limit_rps=20, seed=3)) as url:
        run = deliver_lines(lines, url, options)
        state = sandbox_state(url)

    assert run.statuses() == {"delivered": len(lines)}, answers(run)
    assert "429" not in answers(run)
    assert state["request_count"] == run.summary.api_calls == len(lines)
    # 12 requests may go at once, then 12 a second.
    assert run.summary.seconds >= (run.summary.api_calls - 12) / 12 * 0.9


def test_only_retryable_failures_are_retried_and_attempts_are_bounded() -> None:
    events: list[dict[str, Any]] = [
        {"type": "identify", "messageId": "ok", "userId": "u1", "traits": {"email": "u1@x.io"}},
        {"type": "track", "messageId": "t1", "userId": "u1", "event": "E", "properties": {}},
        {
            "type": "page",
            "messageId": "p1",
            "userId": "u1",
            "timestamp": "2024-05-01T10:00:00Z",
            "context": {"page": {"url": "https://x.io/", "path": "/"}},
        },
    ]
    forced = {"events-create": 503, "site-views-create": 400}
    options = DeliveryOptions(concurrency=2, max_attempts=3, backoff_initial=0.01, backoff_max=0.02)
    with serve_in_thread(SandboxOptions(forced_status=forced, seed=5)) as url:
        run = deliver_lines(lines_of(events), url, options)
        state = sandbox_state(url)

    outcomes = run.by_key()
    assert outcomes["ok"].status == "delivered"
    track, page = outcomes["t1"], outcomes["p1"]
    assert (track.status, track.attempts) == ("failed", 3)
    assert track.requests == (f"POST {REAL_API}events/ -> 503",) * 3
    assert track.error is not None
    assert "503" in track.error
    assert "retry later" in track.error
    assert (page.status, page.attempts) == ("rejected", 1)
    assert page.requests == (f"POST {REAL_API}site-views/ -> 400",)
    assert page.error is not None
    assert "400" in page.error
    assert not run.summary.all_delivered
    assert run.summary.counts == {"delivered": 1, "failed": 1, "rejected": 1}
    assert state["events"] == []
    assert state["site_views"] == []


def test_a_wrong_api_key_is_rejected_at_once_and_never_shown() -> None:
    lines = mix_lines(1)
    with serve_in_thread(SandboxOptions(api_key="the-right-key-0123456789", seed=6)) as url:
        run = deliver_lines(lines, url, RETRYING)
        state = sandbox_state(url)

    assert run.statuses() == {"rejected": len(lines)}
    assert state["users"] == state["events"] == state["site_views"] == []
    for outcome in run.outcomes:
        assert outcome.attempts == 1  # an auth failure is not retried
        assert len(outcome.requests) == 1
        assert outcome.requests[0].endswith(" -> 401")
        assert outcome.error is not None
        assert "refused the API key" in outcome.error
        assert API_KEY not in outcome.error
        assert API_KEY not in repr(outcome)


def test_retries_after_a_429_wait_for_retry_after() -> None:
    events: list[dict[str, Any]] = [
        {"type": "identify", "messageId": "id", "userId": "slow", "traits": {"email": "s@x.io"}},
        {"type": "track", "messageId": "tr", "userId": "slow", "event": "E", "properties": {}},
    ]
    options = DeliveryOptions(concurrency=1, max_attempts=2, backoff_initial=0.01, backoff_max=0.02)
    with serve_in_thread(SandboxOptions(forced_status={"events-create": 429}, seed=8)) as url:
        run = deliver_lines(lines_of(events), url, options)

    track = run.by_key()["tr"]
    assert (track.status, track.attempts) == ("failed", 2)
    assert track.requests == (f"POST {REAL_API}events/ -> 429",) * 2
    assert track.error is not None
    assert "throttling" in track.error
    # The sandbox says Retry-After: 1; the 10 ms backoff must not retry sooner.
    assert run.summary.seconds >= 1.0
