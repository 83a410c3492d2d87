"""What a stopped run and a paused service say is true (issue 13 follow-ups): a run that
stops after --max-outage had filed deliveries; the words say what stays pending, not that
nothing was filed. In process: `FakeUserCom` behind a switch that takes User.com down."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from e2e_helpers import API_KEY, config, lines_of

from pipeline.delivery import DeliveryOptions, Outcome, deliver, read_jsonl
from pipeline.delivery.loop import run as run_loop
from pipeline.testing import FakeUserCom, Received, Reply

FAST = DeliveryOptions(concurrency=2, backoff_initial=0.01, backoff_max=0.02, max_seconds=10)


def down_after_writes(writes: int) -> FakeUserCom:
    """User.com that answers its first `writes` writes, then 503 to everything, the probe too."""
    left = writes

    def answer(seen: Received) -> Reply | None:
        nonlocal left
        if left <= 0:
            return Reply(503, {"detail": "Service unavailable."})
        left -= seen.method != "GET"
        return None

    return FakeUserCom(api_key=API_KEY, routes={"* *": answer})


def test_a_stop_after_max_outage_does_not_say_nothing_was_filed_when_some_was() -> None:
    heard: list[Outcome] = []
    identifies = lines_of(
        {"type": "identify", "userId": f"u{n}", "traits": {"email": f"u{n}@x.io"}}
        for n in range(12)
    )
    summary = run_loop(
        deliver(
            read_jsonl(identifies, config()),
            config(),
            replace(FAST, max_outage=0.5),
            lambda _incoming, outcome: heard.append(outcome),
            transport=down_after_writes(4),
        )
    )
    statuses = Counter(outcome.status for outcome in heard)
    assert statuses["delivered"] == 4, statuses
    assert summary.fault is not None
    assert "longer than --max-outage" in summary.fault
    # Before: "nothing was filed as finished", after 4 deliveries were filed.
    assert "nothing was filed" not in summary.fault
    assert "in flight or not yet sent stay pending" in summary.fault
    assert summary.fault.endswith("re-run with the same --ledger when fixed")
