"""What a stopped run and a paused service say is true (issue 13 follow-ups): a run that
stops after --max-outage had filed deliveries; the words say what stays pending, not that
nothing was filed. In process: `FakeUserCom` behind a switch that takes User.com down."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import httpx
from e2e_helpers import API_KEY, config, lines_of

from pipeline.delivery import DeliveryOptions, Outcome, deliver, read_jsonl
from pipeline.delivery.loop import run as run_loop
from pipeline.testing import FakeUserCom

FAST = DeliveryOptions(concurrency=2, backoff_initial=0.01, backoff_max=0.02, max_seconds=10)


class DownAfterWrites(httpx.AsyncBaseTransport):
    """User.com that answers its first `writes` writes, then 503 to everything, the probe too."""

    def __init__(self, writes: int) -> None:
        self.fake, self.left = FakeUserCom(api_key=API_KEY), writes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.left <= 0:
            return httpx.Response(503, json={"detail": "Service unavailable."})
        self.left -= request.method != "GET"
        return await self.fake.handle_async_request(request)


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
            transport=DownAfterWrites(4),
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
