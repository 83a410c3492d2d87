"""DELIVERY §1-§3 on the wire: `pipeline.delivery.wire.Wire` is the one way the engine, the
service and `Destination.adeliver` send a core Request to User.com and get its Answer, and the
one probe they start (and pause) with. Everything here runs in process (MockTransport,
FakeUserCom)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from e2e_helpers import API_KEY as E2E_KEY
from e2e_helpers import config as e2e_config
from e2e_helpers import lines_of
from helpers import KEY

from pipeline import Destination
from pipeline.core.answers import Answer, Reply, Unreachable
from pipeline.core.calls import Request, call
from pipeline.core.config import Config, parse_config
from pipeline.core.types import thaw
from pipeline.delivery import deliver, read_jsonl
from pipeline.delivery.faults import PROBE_SUBJECT
from pipeline.delivery.outcome import Exchange
from pipeline.delivery.wire import Through, Wire
from pipeline.runner import Target
from pipeline.testing import FakeUserCom

SANDBOX = "http://127.0.0.1:9"  # never dialled: the transports below answer in process
REAL = "https://acme.user.com/api/public"


def config() -> Config:
    cfg: Config = parse_config({"apiKey": KEY, "appSubdomain": "acme"}).unwrap()
    return cfg


def answering(status: int, body: object = None) -> httpx.MockTransport:
    return httpx.MockTransport(lambda _request: httpx.Response(status, json=body))


def test_at_most_width_requests_are_on_the_wire_at_once() -> None:
    seen = {"now": 0, "most": 0}

    async def handle(_request: httpx.Request) -> httpx.Response:
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        await asyncio.sleep(0.01)
        seen["now"] -= 1
        return httpx.Response(404, json={"detail": "Not found."})

    async def main() -> None:
        async with Wire.of(config(), None, 3, httpx.MockTransport(handle)) as wire:
            await asyncio.gather(*(wire.send(call("user_by_id", f"u{n}")) for n in range(12)))
            assert wire.on_the_wire == 0

    asyncio.run(main())
    assert seen["most"] == 3


def test_an_answer_is_logged_as_an_exchange_with_the_real_url_and_the_key_blanked() -> None:
    echo = answering(400, {"detail": f"bad token {KEY}"})

    async def main() -> None:
        async with Wire.of(config(), SANDBOX, 2, echo) as wire:
            sent = await wire.send(call("user_by_id", "a/b"))
        assert sent.exchange == Exchange("user_by_id", "GET", f"{REAL}/users-by-id/a%2Fb/", "400")
        assert str(sent.exchange) == f"GET {REAL}/users-by-id/a%2Fb/ -> 400"
        assert isinstance(sent.answer, Reply)
        assert KEY not in json.dumps(thaw(sent.answer.body))
        assert sent.fault is None

    asyncio.run(main())


def test_a_refused_key_is_a_run_fault_said_by_the_wire() -> None:
    async def main() -> None:
        async with Wire.of(config(), None, 1, answering(401, {"detail": "no"})) as wire:
            sent = await wire.send(call("upsert_user", body=None))
        assert sent.fault is not None
        assert "refused the API key (401)" in sent.fault

    asyncio.run(main())


@pytest.mark.parametrize(
    ("error", "reason"),
    [(httpx.ReadTimeout, "timeout"), (httpx.ConnectError, "connection")],
)
def test_no_answer_is_unreachable_and_logged_by_its_reason(
    error: type[httpx.TransportError], reason: str
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise error("no", request=request)

    async def main() -> None:
        async with Wire.of(config(), None, 1, httpx.MockTransport(handle)) as wire:
            sent = await wire.send(call("user_by_id", "u1"))
        assert sent.answer == Unreachable(reason, error.__name__)  # type: ignore[arg-type]
        assert sent.exchange.answer == reason

    asyncio.run(main())


def test_ready_runs_once_the_slot_is_held_and_may_refuse_the_request() -> None:
    fake = FakeUserCom(api_key=KEY)

    class Refused(Exception):
        pass

    def refuse() -> None:
        raise Refused

    async def main() -> None:
        async with Wire.of(config(), None, 1, fake) as wire:
            with pytest.raises(Refused):
                await wire.send(call("user_by_id", "u1"), ready=refuse)
            assert wire.on_the_wire == 0

    asyncio.run(main())
    assert fake.requests == []


def test_the_probe_is_one_read_counted_as_the_probe() -> None:
    fake = FakeUserCom(api_key=KEY)

    async def main() -> None:
        async with Wire.of(config(), None, 2, fake) as wire:
            sent = await wire.probe_once()
            assert sent.exchange.endpoint == "probe"
            assert sent.exchange.answer == "404"
            assert await wire.probe() is None

    asyncio.run(main())
    assert [seen.url for seen in fake.requests] == [f"{REAL}/users-by-id/{PROBE_SUBJECT}/"] * 2


def test_the_start_probe_tries_a_lost_connection_again_and_names_a_refused_key() -> None:
    tries: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        tries.append(request.method)
        if len(tries) == 1:
            raise httpx.RemoteProtocolError("dropped", request=request)
        return httpx.Response(403, json={"detail": "no"})

    async def main() -> str | None:
        async with Wire.of(config(), None, 1, httpx.MockTransport(flaky)) as wire:
            return await wire.probe()

    fault = asyncio.run(main())
    assert fault is not None
    assert "refused the API key (403)" in fault
    assert tries == ["GET", "GET"]


def test_destination_adeliver_logs_its_requests_as_exchanges() -> None:
    fake = FakeUserCom(api_key=KEY)

    async def main() -> None:
        async with Destination({"apiKey": KEY, "appSubdomain": "acme"}, transport=fake) as dest:
            outcome = await dest.adeliver({"type": "identify", "userId": "u1"})
        assert outcome.status == "delivered", outcome
        assert all(isinstance(e, Exchange) for e in outcome.requests)
        assert [e.endpoint for e in outcome.requests if isinstance(e, Exchange)] == ["upsert_user"]

    asyncio.run(main())


class Kept(Through):
    """The caller's connections: counts what goes through them, and whether they were closed."""

    def __init__(self, fake: FakeUserCom) -> None:
        super().__init__(fake)
        self.asked = 0
        self.closed = False

    async def answer(self, target: Target, request: Request) -> Answer:
        self.asked += 1
        return await super().answer(target, request)

    async def aclose(self) -> None:
        self.closed = True


def test_the_engine_sends_through_the_wire_it_is_given_and_leaves_it_open() -> None:
    # The service keeps one Wire per app for its life: every round's deliver() uses it.
    cfg = e2e_config()
    kept = Kept(FakeUserCom(api_key=E2E_KEY))
    wire = Wire(Target.of(cfg), cfg.base_url, 2, kept)
    events = [{"type": "identify", "userId": f"u{n}", "messageId": f"m{n}"} for n in range(3)]

    async def main() -> list[int]:
        counts = []
        for _ in range(2):
            summary = await deliver(read_jsonl(lines_of(events), cfg), cfg, wire=wire)
            counts.append(summary.counts["delivered"])
        return counts

    assert asyncio.run(main()) == [3, 3]
    assert kept.asked == 2 * (1 + 3)  # each round: the start probe, one write per event
    assert not kept.closed
