"""DELIVERY §2 and §4: every request an outcome lists is an `Exchange` value (endpoint, method,
real URL, answer); run totals count calls by (endpoint, answer); `--out` and the ledger keep
the text `METHOD URL -> answer` they always had, so ledgers written before read the same in
`usercom explain` and `usercom report`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from e2e_helpers import API_KEY, config, lines_of

from pipeline.cli.ledger_views import build_report, story, story_json
from pipeline.delivery import DeliveryOptions, deliver, read_jsonl
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.loop import run as run_loop
from pipeline.delivery.outcome import Exchange, Outcome
from pipeline.testing import FakeUserCom

REAL = "https://acme.user.com/api/public"
APP = "acme"


def delivered(events: list[dict[str, object]]) -> tuple[list[Outcome], dict[tuple[str, str], int]]:
    heard: list[Outcome] = []
    cfg = config()
    summary = run_loop(
        deliver(
            read_jsonl(lines_of(events), cfg),
            cfg,
            DeliveryOptions(concurrency=2),
            lambda _item, outcome: heard.append(outcome),
            transport=FakeUserCom(api_key=API_KEY),
        )
    )
    return heard, dict(summary.calls)


def test_outcomes_carry_exchanges_and_totals_are_keyed_by_endpoint_and_answer() -> None:
    heard, calls = delivered([{"type": "identify", "userId": "u1", "messageId": "m1"}])
    (outcome,) = heard
    assert outcome.status == "delivered", outcome
    assert outcome.requests == (
        Exchange("upsert_user", "POST", f"{REAL}/users/update_or_create/", "201"),
    )
    assert calls == {("upsert_user", "201"): 1}


def test_out_writes_each_exchange_as_the_text_it_always_had() -> None:
    heard, _ = delivered([{"type": "identify", "userId": "u1", "messageId": "m1"}])
    written = json.loads(json.dumps(heard[0].as_json()))
    assert written["requests"] == [f"POST {REAL}/users/update_or_create/ -> 201"]


def test_stored_text_reads_back_as_the_exchange_it_was() -> None:
    made = Exchange("user_event_by_id", "POST", f"{REAL}/users-by-id/a%2Fb/events/", "404")
    assert Exchange.read(str(made)) == made
    search = Exchange("user_by_email", "GET", f"{REAL}/users/search/?email=a%40b.io", "timeout")
    assert Exchange.read(str(search)) == search
    assert Exchange.read("hand-edited words") == Exchange("", "?", "hand-edited words", "?")


def old_ledger(path: Path, requests: list[str]) -> None:
    """A ledger as an earlier version left it: requests stored as a JSON list of text."""
    with Ledger.open_writer(path, APP) as ledger:
        ledger.enqueue(f"{APP}:m1", "h1", b'{"type":"track","userId":"u1","event":"Paid"}')
        ledger.record(f"{APP}:m1", "delivered", 1, [], None, [])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE events SET requests = ?", (json.dumps(requests),))


def test_an_old_ledger_reads_the_same_in_explain_and_report(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    stored = [
        f"POST {REAL}/users-by-id/u1/events/ -> 404",
        f"GET {REAL}/users-by-id/u1/ -> 200",
        f"POST {REAL}/events/ -> 201",
    ]
    old_ledger(path, stored)
    with Ledger.open_reader(path) as book:
        row = book.find(f"{APP}:m1")
        assert row is not None
        assert [e.endpoint for e in row.exchanges] == ["user_event_by_id", "user_by_id", "event"]
        lines = story(book, row)
        assert story_json(book, row)["requests"] == stored
        report = build_report(book)
    assert f"  1. {stored[0]}  (user not found by this custom_id: falls back to the lookup)" in (
        lines
    )
    assert f"  2. {stored[1]}  (ok)" in lines
    assert report.calls == {
        ("POST", "/users-by-id/<id>/events/", "404"): 1,
        ("GET", "/users-by-id/<id>/", "200"): 1,
        ("POST", "/events/", "201"): 1,
    }
