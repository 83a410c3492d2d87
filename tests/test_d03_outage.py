"""DELIVERY §3 outages: the lanes pause and the start probe's read decides, never a resend of
the failing request (issue 13, item 9). In process: `FakeUserCom` as the transport, and the
pause/probe decision (`OutageWatch`) with a fake clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
from e2e_helpers import API_KEY, config, lines_of

from pipeline.cli.sending import Tally, exit_status
from pipeline.core.answers import Reply, Unreachable
from pipeline.delivery import DeliveryOptions, Outcome, Summary, deliver, read_jsonl
from pipeline.delivery.engine import Control
from pipeline.delivery.faults import probe_verdict
from pipeline.delivery.loop import run as run_loop
from pipeline.delivery.pacing import WINDOW, OutageWatch
from pipeline.runner import Target
from pipeline.testing import FakeClock, FakeUserCom, Received, routes

BASE = "https://acme.user.com/api/public"
PROBE = "/users-by-id/usercom-pipeline-probe/"


def users(count: int, tracks: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for u in range(count):
        events.append({"type": "identify", "userId": f"u{u}", "traits": {"email": f"u{u}@x.io"}})
        events += [
            {"type": "track", "userId": f"u{u}", "event": "Seen", "properties": {"n": t}}
            for t in range(tracks)
        ]
    return events


def run(
    events: list[dict[str, Any]], transport: httpx.AsyncBaseTransport, options: DeliveryOptions
) -> tuple[Summary, list[Outcome]]:
    heard: list[Outcome] = []
    summary = run_loop(
        deliver(
            read_jsonl(lines_of(events), config()),
            config(),
            options,
            lambda _incoming, outcome: heard.append(outcome),
            transport=transport,
        )
    )
    return summary, heard


FAST = DeliveryOptions(concurrency=4, backoff_initial=0.01, backoff_max=0.02, max_seconds=10)


def probes(fake: FakeUserCom) -> int:
    return sum(1 for seen in fake.requests if seen.url.endswith("usercom-pipeline-probe/"))


# --- end to end in process ------------------------------------------------------------------


def test_one_event_always_answered_5xx_fails_alone_and_the_run_does_not_wait() -> None:
    # u0's event route always answers 503; everything else (the probe too) is fine. With 12
    # attempts its failures alone fill half the window: the probe is answered, so it is no
    # outage, and the event ends failed, holding only u0's later track.
    fake = FakeUserCom(api_key=API_KEY, forced=["POST /users-by-id/u0/events/=503"])
    # Were it taken for an outage, the run would stop after --max-outage with exit 3.
    options = replace(FAST, max_attempts=12, max_outage=30.0)
    summary, heard = run(users(4, 2), fake, options)
    by_status = Counter(o.status for o in heard)
    assert by_status == {"delivered": 10, "failed": 1, "held": 1}, summary.errors
    failed = next(o for o in heard if o.status == "failed")
    assert failed.attempts == 12
    assert "503" in (failed.error or "")
    assert summary.fault is None
    assert exit_status(summary, Tally()) == 4
    assert probes(fake) >= 2  # the start probe and the pause's
    # The failing request was never resent as the probe: one request per attempt.
    sent = [r for r in fake.requests if r.url.endswith("/users-by-id/u0/events/")]
    assert len(sent) == 12


def test_a_real_outage_pauses_probes_and_stops_after_max_outage() -> None:
    # Everything answers 503, the probe as well (the start probe takes a 5xx as User.com's
    # answer, as DELIVERY §3 says for the start): the lanes pause, probe, and stop at the limit.
    fake = FakeUserCom(api_key=API_KEY, forced=["/=503"])
    options = replace(FAST, max_outage=1.5)
    summary, heard = run(users(6, 1), fake, options)
    assert summary.fault is not None
    assert "longer than --max-outage" in summary.fault
    assert {o.status for o in heard} == {"pending"}
    assert exit_status(summary, Tally()) == 3
    assert probes(fake) >= 3  # the start probe, then one per pause
    # No event burned its attempts: at most one failed write per lane before the pause.
    writes = [r for r in fake.requests if r.method == "POST"]
    assert len(writes) <= 2 * WINDOW


def down_until_probe(nth: int) -> Callable[[Received], routes.Reply | None]:
    """Every request answers 503 (the probes too) until the `nth` probe, which the fake answers
    like everything after it: an outage that ends during the pause."""
    probes = 0

    def answer(seen: Received) -> routes.Reply | None:
        nonlocal probes
        probes += seen.path.endswith("usercom-pipeline-probe/")
        return routes.Reply(503, {"detail": "Service unavailable."}) if probes < nth else None

    return answer


def test_an_outage_that_ends_costs_no_event_an_attempt() -> None:
    # The start probe (a 5xx is User.com's answer at the start) and the first pause probe
    # meet the outage; the second pause probe is answered: the waiting requests go again.
    fake = FakeUserCom(api_key=API_KEY, routes={"* *": down_until_probe(nth=3)})
    summary, heard = run(users(8, 2), fake, replace(FAST, max_outage=5.0))
    assert Counter(o.status for o in heard) == {"delivered": 24}, summary.errors
    assert summary.fault is None
    assert summary.calls["probe", "503"] == 1
    # Only the failures before the window filled (10 over 4 lanes) cost attempts; the waits
    # of the pause cost none.
    assert max(o.attempts for o in heard) <= 3
    assert len(fake.state["events"]) == 16


# --- the decision, with a fake clock --------------------------------------------------------


def test_the_window_pauses_once_half_of_it_failed() -> None:
    watch = OutageWatch(clock=FakeClock(100.0))
    for _ in range(WINDOW // 2):
        assert watch.answer(False) is False
    starts = [watch.answer(True) for _ in range(WINDOW // 2)]
    assert starts == [False] * (WINDOW // 2 - 1) + [True]
    assert watch.answer(True) is False  # already paused: one pause, one probe at a time
    assert watch.pause() is not None


def test_an_answered_probe_is_no_outage_and_starts_the_window_afresh() -> None:
    watch = OutageWatch(clock=FakeClock(100.0))
    for _ in range(WINDOW // 2 - 1):
        watch.answer(True)
    assert watch.answer(True) is True
    assert watch.probe_answered() is False  # no probe had failed: the failures are the events'
    assert watch.pause() is None
    assert [watch.answer(True) for _ in range(WINDOW // 2 - 1)] == [False] * (WINDOW // 2 - 1)


def test_failed_probes_back_off_together_capped_and_stop_at_max_outage() -> None:
    clock = FakeClock(100.0)
    watch = OutageWatch(clock=clock)
    for _ in range(WINDOW // 2):
        watch.answer(True)
    waits: list[float] = []
    for _ in range(14):
        wait = watch.probe_failed("User.com answered the probe with 503", max_outage=600.0)
        assert wait is not None
        waits.append(wait)
        clock.now += wait
    assert waits[:3] == [0.5, 0.75, 1.125]
    assert max(waits) == 60.0
    pause = watch.pause()
    assert pause is not None
    assert pause.reason.endswith("503")
    clock.now = 100.0 + 600.0
    assert watch.probe_failed("again", max_outage=600.0) is None  # past --max-outage: stop
    assert watch.probe_answered() is True  # an outage had been on: waiting requests go again


def test_the_last_wait_ends_at_max_outage_not_after() -> None:
    clock = FakeClock(100.0)
    watch = OutageWatch(clock=clock, backoff_first=50.0)
    watch.probe_failed("down", max_outage=60.0)
    clock.now += 50.0
    assert watch.probe_failed("down", max_outage=60.0) == 10.0


def test_what_a_pause_probe_answer_means() -> None:
    target = Target("https://acme.user.com", API_KEY)
    assert probe_verdict(Reply(404, {"detail": "Not found."}), target)[0] == "answered"
    assert probe_verdict(Reply(200, {"id": 1}), target)[0] == "answered"
    assert probe_verdict(Reply(429, None, 2.0), target)[0] == "answered"
    assert probe_verdict(Reply(503, None), target) == (
        "failed",
        "User.com at https://acme.user.com answered the probe with 503",
    )
    assert probe_verdict(Unreachable("timeout", "ReadTimeout"), target)[0] == "failed"
    assert probe_verdict(Reply(200, "<html>maintenance</html>"), target)[0] == "failed"
    verdict, why = probe_verdict(Reply(401, None), target)
    assert verdict == "fault"
    assert "refused the API key (401)" in why


def hangs() -> FakeUserCom:
    """The probe is answered; every other request never is (a host that stopped answering)."""
    probe = routes.Reply(404, {"detail": "Not found."})
    return FakeUserCom(routes={f"GET {PROBE}": probe}, otherwise=routes.Reply(503, delay=3600))


def test_a_stop_leaves_requests_that_hang_after_a_short_grace_and_files_them_pending() -> None:
    # DELIVERY §4: a signal lets in-flight attempts end, "at most a few seconds"; a request
    # to a host that no longer answers would otherwise hold the run for its whole timeout.
    heard: list[Outcome] = []
    control = Control()

    async def main() -> Summary:
        asyncio.get_running_loop().call_later(0.3, control.stop, "interrupted (SIGINT)")
        return await asyncio.wait_for(
            deliver(
                read_jsonl(lines_of(users(4, 1)), config()),
                config(),
                replace(FAST, stop_grace=0.5),
                lambda _incoming, outcome: heard.append(outcome),
                transport=hangs(),
                control=control,
            ),
            timeout=10,
        )

    run_loop(main())  # within its 10 s bound: the hanging requests were left
    assert Counter(o.status for o in heard) == {"pending": 8}


def never_answers() -> FakeUserCom:
    return FakeUserCom(otherwise=routes.Reply(503, delay=3600))


def test_a_stop_during_the_start_probe_ends_the_run_at_once_with_nothing_filed() -> None:
    heard: list[Outcome] = []
    control = Control()

    async def main() -> Summary:
        asyncio.get_running_loop().call_later(0.3, control.stop, "interrupted (SIGTERM)")
        return await asyncio.wait_for(
            deliver(
                read_jsonl(lines_of(users(2, 1)), config()),
                config(),
                FAST,
                lambda _incoming, outcome: heard.append(outcome),
                transport=never_answers(),
                control=control,
            ),
            timeout=10,  # the probe would wait for its 30 s timeout, three times
        )

    summary = run_loop(main())
    assert summary.fault is None
    assert {o.status for o in heard} <= {"pending"}
