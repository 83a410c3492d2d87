"""Which queued events a round takes (DELIVERY §2 per-user order and `held`, §6 backoff):
`delivery.rounds.Picking`, the rule of the service's rounds and of the queue's state machine."""

from __future__ import annotations

import json
from dataclasses import replace

from pipeline.core.config import parse_config
from pipeline.delivery.incoming import Incoming, incoming
from pipeline.delivery.rounds import Held, Picking

CFG = parse_config({"apiKey": "k" * 64, "appSubdomain": "acme"}).unwrap()


def event(message: str, user: str, group: str | None = None) -> Incoming:
    body: dict[str, object] = {"messageId": message, "userId": user}
    if group is None:
        body |= {"type": "track", "event": "E"}
    else:
        body |= {"type": "group", "groupId": group, "traits": {"name": group}}
    return incoming(CFG, 0, json.dumps(body).encode())


def test_a_failed_event_not_due_holds_its_users_later_events_only() -> None:
    picking = Picking()
    waiting = replace(event("a1", "ann"), deferred="failed; not due yet")
    assert picking.place(waiting) == "blocks"
    assert picking.place(event("a2", "ann")) == Held("acme:a1")
    assert picking.place(event("b1", "bob")) == "take"
    assert Held("acme:a1").reason == "held: an earlier event of this user (acme:a1) did not finish"


def test_a_user_a_running_round_holds_waits_with_its_later_events() -> None:
    first = event("a1", "ann")
    picking = Picking(busy_lanes={first.lane})
    assert picking.place(first) == "busy"
    assert picking.place(event("a2", "ann")) == "busy"
    assert picking.place(event("b1", "bob")) == "take"


def test_two_writes_to_one_company_never_go_in_one_look() -> None:
    picking = Picking()
    assert picking.place(event("a1", "ann", group="acme-co")) == "take"
    assert picking.place(event("b1", "bob", group="acme-co")) == "busy"
    assert picking.place(event("b2", "bob")) == "busy"  # bob's order is kept
    assert picking.place(event("c1", "cyd", group="other-co")) == "take"
