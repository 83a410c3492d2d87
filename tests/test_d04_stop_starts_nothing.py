"""A stop starts nothing new (DELIVERY §4 Signals): lanes that wait for a connection slot when
the stop comes do not send, and the events they carried stay `pending`, not attempted. In
process: `FakeUserCom` as the transport, the stop given from inside a request."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from e2e_helpers import FAST, config, lines_of

from pipeline.delivery import Outcome, Summary, deliver, read_jsonl
from pipeline.delivery.engine import Control
from pipeline.delivery.loop import run as run_loop
from pipeline.testing import FakeUserCom, Received


class StopsAtTheThirdWrite:
    """User.com, with a signal arriving while the third write is on the wire."""

    def __init__(self, control: Control) -> None:
        self.fake = FakeUserCom(latency_ms=5, routes={"* *": self.watch})
        self.control = control
        self.writes = 0
        self.after_stop = 0

    def watch(self, seen: Received) -> None:
        """Counts what comes after the stop; every request is answered as User.com would."""
        if self.control.reason is not None:
            self.after_stop += 1
        if seen.method != "GET":
            self.writes += 1
            if self.writes == 3:
                self.control.stop("interrupted (SIGINT)")


def identifies(users: int) -> list[str]:
    return lines_of(
        {"type": "identify", "userId": f"u{u}", "traits": {"email": f"u{u}@x.io"}}
        for u in range(users)
    )


def run_until_stopped(concurrency: int) -> tuple[StopsAtTheThirdWrite, Summary, list[Outcome]]:
    control = Control()
    transport = StopsAtTheThirdWrite(control)
    heard: list[Outcome] = []
    summary = run_loop(
        deliver(
            read_jsonl(identifies(40), config()),
            config(),
            replace(FAST, concurrency=concurrency),
            lambda _incoming, outcome: heard.append(outcome),
            transport=transport.fake,
            control=control,
        )
    )
    return transport, summary, heard


def test_lanes_waiting_for_a_slot_when_the_stop_comes_send_nothing() -> None:
    transport, summary, heard = run_until_stopped(concurrency=1)
    # Before, each lane read ahead and queued for the one slot went on: 37 more requests.
    assert transport.after_stop == 0
    statuses = Counter(outcome.status for outcome in heard)
    assert set(statuses) == {"delivered", "pending"}, statuses
    assert statuses["delivered"] == 3, statuses
    assert summary.counts == statuses  # every event read has its outcome: reading stopped
    assert len(transport.fake.state["users"]) == 3


def test_events_the_stop_kept_from_their_first_request_are_pending_and_not_attempted() -> None:
    transport, summary, heard = run_until_stopped(concurrency=4)
    assert transport.after_stop == 0
    untouched = [o for o in heard if o.status == "pending" and not o.requests]
    assert len(untouched) >= 10, Counter(o.status for o in heard)
    assert all(outcome.attempts == 0 for outcome in untouched), untouched[:3]
    # The summary's "events sent" counts only events a request was made for.
    assert summary.sent == sum(1 for outcome in heard if outcome.requests)
