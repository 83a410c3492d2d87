"""End to end over loopback: the delivery engine against the sandbox served by uvicorn."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from e2e_helpers import (
    FAST,
    REAL_API,
    content_key,
    deliver_lines,
    expected_memberships,
    expected_pages,
    expected_tracks,
    key_of,
    lines_of,
    memberships,
    mix_lines,
    page_occurrences,
    sandbox_state,
    texts,
    track_occurrences,
    user_ids_by_custom_id,
)

from pipeline.delivery import DeliveryOptions
from pipeline.sandbox import SandboxOptions, serve_in_thread

FOUR_TYPES: list[dict[str, Any]] = [
    {
        "type": "identify",
        "messageId": "ann-identify",
        "userId": "u-ann",
        "traits": {
            "email": "ann+shop@example.com",
            "firstName": "Ann",
            "lastName": "Lee",
            "gender": "female",
            "plan": "pro",
            "age": 33,
        },
    },
    {
        "type": "identify",
        "messageId": "bob-identify",
        "userId": "u-bob",
        "context": {"traits": {"email": "bob@example.com", "firstName": "Bob"}},
    },
    {
        "type": "track",
        "messageId": "ann-order",
        "userId": "u-ann",
        "event": "Order Completed",
        "properties": {"price": 30, "currency": "EUR", "position": 0},
        "timestamp": "2024-05-01T10:00:30.900+02:00",
    },
    {
        "type": "track",
        "messageId": "bob-view",
        "userId": "u-bob",
        "event": "Product Viewed",
        "properties": {"sku": "A-1", "position": 1},
        "timestamp": 1_714_557_600_123,
    },
    {
        "type": "track",
        "messageId": "ann-view",
        "userId": "u-ann",
        "event": "Product Viewed",
        "properties": {"sku": "B-2", "position": 2},
        "originalTimestamp": "2024-05-01T10:00:00Z",
    },
    {
        "type": "page",
        "messageId": "ann-page",
        "userId": "u-ann",
        "timestamp": "2024-05-01T10:05:00Z",
        "context": {"page": {"url": "https://shop.example.com/cart", "path": "/cart"}},
    },
    {
        "type": "page",
        "messageId": "bob-page",
        "userId": "u-bob",
        "timestamp": "2024-05-01T11:00:00Z",
        "properties": {"url": "https://shop.example.com/", "path": "/"},
    },
    {
        "type": "group",
        "messageId": "ann-group",
        "userId": "u-ann",
        "groupId": "firm-1",
        "traits": {"name": "Firm One", "industry": "Retail", "city": "Springfield"},
    },
    {
        "type": "group",
        "messageId": "bob-group",
        "userId": "u-bob",
        "groupId": "firm-1",
        "traits": {"name": "Firm One"},
    },
]


def test_all_four_event_types_land_in_the_sandbox() -> None:
    with serve_in_thread(SandboxOptions(seed=11)) as url:
        run = deliver_lines(lines_of(FOUR_TYPES), url)
        state = sandbox_state(url)

    assert run.statuses() == {"delivered": len(FOUR_TYPES)}, run.outcomes
    assert run.summary.all_delivered
    assert run.summary.events == len(FOUR_TYPES)

    users = {user["custom_id"]: user for user in state["users"]}
    assert sorted(users) == ["u-ann", "u-bob"]
    ann, bob = users["u-ann"], users["u-bob"]
    assert (ann["email"], ann["name"], ann["gender"]) == (
        "ann+shop@example.com",
        "Ann Lee",
        "female",
    )
    assert (ann["subscription_plan"], ann["age"]) == ("pro", 33)
    assert (bob["email"], bob["name"]) == ("bob@example.com", "Bob")
    assert len(ann["user_key"]) == 12

    [company] = state["companies"]
    assert (company["custom_id"], company["name"]) == ("firm-1", "Firm One")
    assert company["sector"] == "Retail"
    assert company["city"] == "Springfield"
    assert sorted(company["employees"]) == sorted([ann["id"], bob["id"]])
    assert [c["name"] for c in ann["companies"]] == ["Firm One"]
    assert [c["name"] for c in bob["companies"]] == ["Firm One"]

    def by_position(event: dict[str, Any]) -> int:
        position: int = event["data"]["position"]
        return position

    assert sorted(state["events"], key=by_position) == [
        {
            "user_id": ann["id"],
            "name": "order_completed",
            "timestamp": 1_714_550_430,  # 08:00:30.9 UTC, rounded down to seconds
            "data": {"value": 30, "currency": "EUR", "position": 0},
        },
        {
            "user_id": bob["id"],
            "name": "Product Viewed",
            "timestamp": 1_714_557_600,  # epoch milliseconds became seconds
            "data": {"sku": "A-1", "position": 1},
        },
        {
            "user_id": ann["id"],
            "name": "Product Viewed",
            "timestamp": 1_714_557_600,  # originalTimestamp when there is no timestamp
            "data": {"sku": "B-2", "position": 2},
        },
    ]
    views = sorted(
        (view["client_user"], view["page_domain"], view["page_path"], view["timestamp"])
        for view in state["site_views"]
    )
    assert views == sorted(
        [
            (ann["user_key"], "https://shop.example.com/cart", "/cart", "2024-05-01T10:05:00Z"),
            (bob["user_key"], "https://shop.example.com/", "/", "2024-05-01T11:00:00Z"),
        ]
    )
    # Every request was made to the sandbox, but the outcomes show the real User.com URLs.
    for outcome in run.outcomes:
        assert texts(outcome), outcome
        for request in texts(outcome):
            method, address, arrow, _status = request.split(" ")
            assert method in ("GET", "POST", "PUT"), request
            assert address.startswith(REAL_API), request
            assert arrow == "->", request
            assert "127.0.0.1" not in request


def test_identify_then_track_of_a_brand_new_user_in_one_file() -> None:
    events: list[dict[str, Any]] = [
        # Before the identify the user does not exist: kept order means this one is rejected.
        {
            "type": "track",
            "messageId": "early-track",
            "userId": "new-1",
            "event": "Signed Up",
            "properties": {"position": 0},
        },
        {
            "type": "identify",
            "messageId": "id-1",
            "userId": "new-1",
            "traits": {"email": "n1@x.io"},
        },
        {
            "type": "track",
            "messageId": "track-1",
            "userId": "new-1",
            "event": "Signed Up",
            "properties": {"position": 1},
            "timestamp": "2024-05-01T10:00:00Z",
        },
        {
            "type": "page",
            "messageId": "page-1",
            "userId": "new-1",
            "timestamp": "2024-05-01T10:00:01Z",
            "context": {"page": {"url": "https://x.io/welcome", "path": "/welcome"}},
        },
        # A brand-new user looked up by email: lookup, then create, then a track.
        {
            "type": "identify",
            "messageId": "id-2",
            "userId": "new-2",
            "traits": {"email": "n2+tag@x.io"},
            "integrations": {"User.com": {"lookup": "email"}},
        },
        {
            "type": "track",
            "messageId": "track-2",
            "userId": "new-2",
            "event": "Signed Up",
            "properties": {"position": 2, "email": "n2+tag@x.io"},
            "integrations": {"User.com": {"lookup": "email"}},
        },
    ]
    with serve_in_thread(SandboxOptions(seed=12)) as url:
        run = deliver_lines(lines_of(events), url)
        state = sandbox_state(url)

    outcomes = run.by_key()
    early = outcomes.pop(key_of("early-track"))
    assert early.status == "rejected"  # a rejected event holds nothing: new-1 goes on
    assert early.error == (
        "No user found with given lookup field, "
        "Track event cannot be completed if there is no valid user"
    )
    assert {key: o.status for key, o in outcomes.items()} == dict.fromkeys(outcomes, "delivered")
    assert texts(outcomes[key_of("id-2")]) == (
        f"GET {REAL_API}users/search/?email=n2%2Btag%40x.io -> 404",
        f"POST {REAL_API}users/ -> 201",
    )

    ids = user_ids_by_custom_id(state)
    assert sorted(ids) == ["new-1", "new-2"]
    # Each user holds exactly its own track. The sandbox numbers users in creation order, and
    # with concurrency either may be created first: compare by custom id, not by internal id.
    owner = {user_id: custom_id for custom_id, user_id in ids.items()}
    assert sorted((owner[e["user_id"]], e["data"]["position"]) for e in state["events"]) == [
        ("new-1", 1),
        ("new-2", 2),
    ]
    [view] = state["site_views"]
    assert view["client_user"] == next(
        user["user_key"] for user in state["users"] if user["custom_id"] == "new-1"
    )
    assert view["page_path"] == "/welcome"


def test_per_user_order_is_kept_with_concurrency_on_the_standard_mix() -> None:
    lines = mix_lines(30)
    options = DeliveryOptions(concurrency=8, backoff_initial=0.01, backoff_max=0.05)
    with serve_in_thread(SandboxOptions(latency_ms=3, seed=13)) as url:
        run = deliver_lines(lines, url, options)
        state = sandbox_state(url)

    assert run.statuses() == {"delivered": len(lines)}
    assert track_occurrences(state) == expected_tracks(lines)
    assert page_occurrences(state) == expected_pages(lines)
    assert memberships(state) == expected_memberships(lines)
    assert len(state["users"]) == 30

    # Each user's events reached the sandbox in input order ...
    owner = {user["id"]: user["custom_id"] for user in state["users"]}
    positions: dict[str, list[int]] = defaultdict(list)
    for event in state["events"]:
        positions[owner[event["user_id"]]].append(event["data"]["position"])
    assert positions == {user: list(range(6)) for user in owner.values()}
    by_key = {user["user_key"]: user["custom_id"] for user in state["users"]}
    paths: dict[str, list[str]] = defaultdict(list)
    for view in state["site_views"]:
        paths[by_key[view["client_user"]]].append(view["page_path"])
    assert paths == {user: ["/p/0", "/p/1"] for user in owner.values()}

    # ... and the outcomes of each user were heard in input order.
    heard: dict[str, list[str]] = defaultdict(list)
    for incoming, outcome in run.heard:
        heard[incoming.lane].append(outcome.key)
    wanted: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        event = json.loads(line)
        wanted[f"user:{event['userId']}"].append(key_of(event["messageId"]))
    assert heard == wanted
    # Positions follow the input order (counted from 1) and each outcome carries its own.
    assert sorted(o.position for o in run.outcomes) == list(range(1, len(lines) + 1))
    assert all(incoming.position == o.position for incoming, o in run.heard)

    # Different users really went concurrently: their events are interleaved in the sandbox.
    switches = sum(
        1
        for a, b in zip(state["events"], state["events"][1:], strict=False)
        if a["user_id"] != b["user_id"]
    )
    assert switches > 2 * len(owner)
    # One write per event plus at most a few lookups: the identity cache and upserts work.
    assert run.summary.api_calls <= 1.2 * len(lines)
    # The sandbox also saw the probe the run starts with, which is not an event's API call.
    assert state["request_count"] == run.summary.api_calls + 1


def test_many_users_joining_one_company_concurrently_create_it_once() -> None:
    events: list[dict[str, Any]] = []
    for n in range(12):
        events.append(
            {"type": "identify", "userId": f"member-{n}", "traits": {"email": f"m{n}@x.io"}}
        )
        events.append(
            {
                "type": "group",
                "userId": f"member-{n}",
                "groupId": "shared-co",
                "traits": {"name": "Shared Co", "industry": "Tools"},
            }
        )
    with serve_in_thread(SandboxOptions(latency_ms=2, seed=14)) as url:
        run = deliver_lines(lines_of(events), url, FAST)
        state = sandbox_state(url)

    assert run.statuses() == {"delivered": len(events)}
    assert [c["custom_id"] for c in state["companies"]] == ["shared-co"]
    assert memberships(state) == {"shared-co": {f"member-{n}" for n in range(12)}}
    assert state["companies"][0]["sector"] == "Tools"
    # Events without a messageId are keyed by the app and the hash of their content, never
    # by their line; their positions still follow the input order.
    assert sorted(run.by_key()) == sorted(content_key(event) for event in events)
    assert {o.key: o.position for o in run.outcomes} == {
        content_key(event): n for n, event in enumerate(events, start=1)
    }
