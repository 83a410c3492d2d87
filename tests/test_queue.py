"""The `DeliveryQueue` contract (DELIVERY §2, §4, §6), run against every backend
(`open_queue` in conftest.py): admit, take, file, requeue and the read models."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest
from conftest import QueueOpener

from pipeline.core.config import parse_config
from pipeline.delivery import incoming as incoming_module
from pipeline.delivery.incoming import REPEATED, incoming, repeat_key, stored
from pipeline.delivery.ledger import Ledger
from pipeline.delivery.lifecycle import Reported
from pipeline.delivery.queue import (
    Admit,
    Arrival,
    DeliveryQueue,
    QueueReader,
    Record,
)


def arrival(key: str, content: str = "h1", rejected: str | None = None) -> Arrival:
    return Arrival(
        f"acme:{key}", content, f'{{"messageId":"{key}","c":"{content}"}}'.encode(), rejected
    )


def outcome(item: Arrival, status: Reported = "delivered", attempts: int = 1) -> Record:
    return Record(item.key, item.content_hash, item.line, status, attempts, (), None, ())


def test_the_sqlite_ledger_is_a_delivery_queue(tmp_path: Path) -> None:
    with Ledger.open_writer(tmp_path / "l.sqlite", "acme") as ledger:
        queue: DeliveryQueue = ledger  # mypy checks the methods and their types
        assert isinstance(queue, DeliveryQueue)
    reader: QueueReader = Ledger.open_reader(tmp_path / "l.sqlite")
    assert isinstance(reader, QueueReader)
    reader.close()


def test_admit_stores_new_events_pending_in_order(open_queue: QueueOpener) -> None:
    queue = open_queue("acme")
    admitted = queue.admit([arrival("a"), arrival("b")])
    queue.commit()
    assert [(a.verdict, a.position, a.joined) for a in admitted] == [
        (Admit.NEW, 1, True),
        (Admit.NEW, 2, True),
    ]
    assert [q.row.key for q in queue.take(0, 10)] == ["acme:a", "acme:b"]
    assert [q.row.key for q in queue.take(1, 10)] == ["acme:b"]
    assert queue.counts()["pending"] == 2


def test_same_content_again_is_one_event(open_queue: QueueOpener) -> None:
    queue = open_queue("acme")
    queue.admit([arrival("a")])
    again = queue.admit([arrival("a")])
    assert again[0].verdict is Admit.KNOWN
    assert not again[0].joined
    assert sum(queue.counts().values()) == 1


def test_other_content_under_a_queued_key_is_rejected_under_its_own_key(
    open_queue: QueueOpener,
) -> None:
    queue = open_queue("acme")
    queue.admit([arrival("a")])
    later = queue.admit([arrival("a", "h2")])[0]
    assert later.verdict is Admit.REPEATED
    assert later.key.startswith("acme:a#repeat-")
    row = queue.get(later.key)
    assert row is not None
    assert row.status == "rejected"
    assert row.error == "messageId repeated with other content at position 1"
    first = queue.get("acme:a")
    assert first is not None
    assert first.content_hash == "h1"
    assert first.status == "pending"
    assert queue.admit([arrival("a", "h2")])[0].verdict is Admit.KNOWN  # its retry


def test_final_is_final_for_that_content(open_queue: QueueOpener) -> None:
    queue = open_queue("acme")
    item = arrival("a")
    queue.admit([item])
    assert queue.file([outcome(item)]) == 1
    queue.commit()
    assert queue.admit([item])[0].verdict is Admit.KNOWN
    changed = queue.admit([arrival("a", "h2")])[0]
    assert (changed.verdict, changed.position, changed.joined) == (Admit.CHANGED, 2, True)
    row = queue.get("acme:a")
    assert row is not None
    assert (row.status, row.content_hash) == ("pending", "h2")


def test_retry_rejected_requeues_a_rejected_event_as_it_is(open_queue: QueueOpener) -> None:
    queue = open_queue("acme")
    item = arrival("a")
    queue.admit([item])
    queue.file([outcome(item, "rejected")])
    assert queue.admit([item])[0].verdict is Admit.KNOWN
    assert queue.admit([item], retry_rejected=True)[0].verdict is Admit.RETRIED
    assert queue.counts()["pending"] == 1


def test_an_arrival_that_can_never_be_delivered_is_filed_rejected_at_once(
    open_queue: QueueOpener,
) -> None:
    queue = open_queue("acme")
    admitted = queue.admit([arrival("big", rejected="too big")])[0]
    assert admitted.verdict is Admit.REJECTED
    assert not admitted.joined
    assert queue.take(0, 10) == []
    row = queue.get("acme:big")
    assert row is not None
    assert (row.status, row.error) == ("rejected", "too big")


def test_file_drops_a_second_finished_outcome_and_replaced_content(
    open_queue: QueueOpener,
) -> None:
    queue = open_queue("acme")
    item = arrival("a")
    queue.admit([item])
    assert queue.file([outcome(item, "failed", 3)]) == 0
    assert queue.file([outcome(item, "delivered", 4)]) == 1
    assert queue.file([outcome(item, "rejected")]) == 0
    row = queue.get("acme:a")
    assert row is not None
    assert (row.status, row.attempts) == ("delivered", 4)
    assert queue.take(0, 10) == []
    old = arrival("b")
    queue.admit([old])
    queue.file([outcome(old, "failed")])
    queue.admit([arrival("b", "h2")])  # a repeat: "b" keeps its first content
    assert queue.file([Record("acme:b", "h0", b"{}", "delivered", 1, (), None, ())]) == 0
    taken = queue.take(0, 10)
    assert [(q.row.key, q.row.status, q.failures) for q in taken] == [("acme:b", "failed", 1)]


def test_file_keeps_held_as_it_is_and_files_no_plan(open_queue: QueueOpener) -> None:
    queue = open_queue("acme")
    item = arrival("a")
    queue.admit([item])
    held = Record(item.key, item.content_hash, item.line, "held", 0, (), "held: x", ())
    queue.file([held])
    queue.file([Record(item.key, item.content_hash, item.line, "held", 0, (), "held: y", ())])
    queue.file([Record(item.key, item.content_hash, item.line, "planned", 0, (), None, ())])
    row = queue.get("acme:a")
    assert row is not None
    assert (row.status, row.error) == ("held", "held: x")


def test_requeue_makes_failed_held_and_asked_for_rejected_pending_again(
    open_queue: QueueOpener,
) -> None:
    queue = open_queue("acme")
    items = [arrival(name) for name in ("f", "h", "r", "d")]
    queue.admit(items)
    statuses: tuple[Reported, ...] = ("failed", "held", "rejected", "delivered")
    queue.file([outcome(item, status) for item, status in zip(items, statuses, strict=True)])
    queue.commit()
    assert queue.requeue(None, rejected=False) == 2
    assert queue.requeue(None, rejected=True) == 1
    assert queue.requeue(["acme:d"], rejected=False) == 1
    assert [q.row.position for q in queue.take(0, 10)] == [1, 2, 3, 4]
    assert list(queue.lines(("pending",))) == [item.line for item in items]


def test_a_stored_row_becomes_an_incoming_without_keying_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = parse_config({"apiKey": "k" * 64, "appSubdomain": "acme"}).unwrap()
    line = b'{"type":"track","event":"x","userId":"u1","messageId":"m1"}'
    read = incoming(cfg, 1, line)

    def no_second_keying(*_: object, **__: object) -> NoReturn:
        raise AssertionError("a stored event is keyed and hashed again")

    monkeypatch.setattr(incoming_module, "canonical", no_second_keying)
    monkeypatch.setattr(incoming_module, "_sha256", no_second_keying)
    again = stored(cfg, read.key, read.content_hash, 7, line, None)
    assert (again.key, again.content_hash, again.position, again.lane) == (
        read.key,
        read.content_hash,
        7,
        read.lane,
    )
    assert again.job == read.job
    repeat = stored(cfg, repeat_key(read.key, "f" * 64), "f" * 64, 8, line, None)
    assert (repeat.job, repeat.problem) == (None, REPEATED)


def test_a_pending_outcome_keeps_the_requests_that_met_a_run_fault(
    open_queue: QueueOpener,
) -> None:
    queue = open_queue("acme")
    item = arrival("a")
    queue.admit([item])
    refused = ("POST https://acme.user.com/api/public/users/update_or_create/ -> 401",)
    queue.file([Record(item.key, item.content_hash, item.line, "pending", 1, refused, None, ())])
    row = queue.get("acme:a")
    assert row is not None
    assert (row.status, row.attempts, row.requests) == ("pending", 1, refused)
    untried = Record(item.key, item.content_hash, item.line, "pending", 0, (), None, ())
    queue.file([untried])
    assert queue.get("acme:a") == row  # not attempted: nothing to tell
