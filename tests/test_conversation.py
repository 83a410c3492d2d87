"""DELIVERY §2-§3: one delivery conversation (runner.delivery, pumped by drive/adrive), and
what a timeout means to each caller that passes it a send function: the engine, Destination
and the live dry run. A timeout is the event's retryable trouble (§2 `failed`); only a host
that cannot be reached at all is a fault of the run (§1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from e2e_helpers import config, lines_of
from helpers import KEY
from returns.result import Success

from pipeline import Destination, RunFault
from pipeline.cli.operator import COULD_NOT_TELL, LIVE, READ_ATTEMPTS, LivePlanner
from pipeline.core.answers import Answer, Reply
from pipeline.core.calls import Request
from pipeline.core.compose import Job, job_of
from pipeline.core.steps import Final
from pipeline.delivery import DeliveryOptions, deliver, read_jsonl
from pipeline.delivery.loop import run as run_loop
from pipeline.runner import Ended, Target, adrive, delivery, drive

TRACK = {"type": "track", "userId": "u1", "event": "Paid", "properties": {"v": 1}}
NOT_FOUND = Reply(404, {"detail": "Not found."})
USER = Reply(200, {"id": 7, "user_key": "abcdefghijkl", "custom_id": "u1"})
CREATED = Reply(201, {"id": 11})


def track_job() -> Job:
    event = read_jsonl(lines_of([TRACK]), config())
    job = next(event).job
    assert isinstance(job, Success)
    found: Job = job.unwrap()
    return found


def answers(table: dict[str, Answer]) -> Callable[[Request], Answer]:
    def answer(request: Request) -> Answer:
        return table[f"{request.method} {request.readable_path()}"]

    return answer


# --- the conversation itself ---------------------------------------------------------------


def test_the_final_requests_404_fallback_is_followed_inside_the_conversation() -> None:
    talk = delivery(Success(track_job().step))
    first = next(talk)
    assert isinstance(first, Final)
    assert first.request.readable_path() == "/users-by-id/u1/events/"
    lookup = talk.send(NOT_FOUND)  # the old route is missing: the lookup, then /events/
    assert isinstance(lookup, Request)
    assert lookup.method == "GET"
    last = talk.send(USER)
    assert isinstance(last, Final)
    assert last.request.readable_path() == "/events/"
    with pytest.raises(StopIteration) as done:
        talk.send(CREATED)
    assert done.value.value == Success(Ended(last, CREATED))


def test_drive_sends_the_final_through_the_callers_own_final_policy() -> None:
    calls: list[str] = []
    finals: list[str] = []

    def send(request: Request) -> Answer:
        calls.append(request.readable_path())
        return USER

    def final(step: Final) -> Answer:
        finals.append(step.request.readable_path())
        return NOT_FOUND if step.request.readable_path().startswith("/users-by-id/") else CREATED

    result = drive(Success(track_job().step), send, final)
    assert calls == ["/users-by-id/u1/"]
    assert finals == ["/users-by-id/u1/events/", "/events/"]
    ended = result.unwrap()
    assert ended.answer == CREATED

    async def asend(request: Request) -> Answer:
        return send(request)

    async def afinal(step: Final) -> Answer:
        return final(step)

    assert asyncio.run(adrive(Success(track_job().step), asend, afinal)).unwrap() == ended


def test_without_a_final_policy_drive_returns_the_final_unsent() -> None:
    sent: list[Request] = []

    def send(request: Request) -> Answer:
        sent.append(request)
        return USER

    result = drive(Success(track_job().step), send)
    assert sent == []
    assert isinstance(result.unwrap(), Final)


# --- what a timeout means, caller by caller --------------------------------------------------


def timing_out_writes(error: type[httpx.TransportError]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"detail": "Not found."})
        raise error("no answer in time", request=request)

    return httpx.MockTransport(handle)


CONFIG = {"apiKey": KEY, "appSubdomain": "acme"}


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError]
)
def test_destination_a_write_that_times_out_is_the_events_failure(
    error: type[httpx.TransportError],
) -> None:
    with Destination(CONFIG, transport=timing_out_writes(error)) as dest:
        outcome = dest.deliver(TRACK)
    assert outcome.status == "failed", outcome
    assert error.__name__ in (outcome.error or "")

    async def adeliver() -> str:
        async with Destination(CONFIG, transport=timing_out_writes(error)) as adest:
            return (await adest.adeliver(TRACK)).status

    assert asyncio.run(adeliver()) == "failed"


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
def test_destination_a_host_that_cannot_be_reached_is_a_run_fault(
    error: type[httpx.TransportError],
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise error("no route", request=request)

    with (
        Destination(CONFIG, transport=httpx.MockTransport(handle)) as dest,
        pytest.raises(RunFault, match="could not be reached"),
    ):
        dest.deliver(TRACK)


def test_engine_a_write_that_times_out_fails_its_event_and_is_no_run_fault() -> None:
    heard: list[str] = []
    options = DeliveryOptions(
        concurrency=1, max_attempts=2, backoff_initial=0.01, backoff_max=0.02, max_seconds=5
    )
    summary = run_loop(
        deliver(
            read_jsonl(lines_of([TRACK]), config()),
            config(),
            options,
            lambda _item, outcome: heard.append(f"{outcome.status} {outcome.error}"),
            transport=timing_out_writes(httpx.ReadTimeout),
        )
    )
    assert summary.fault is None
    assert len(heard) == 1
    assert heard[0].startswith("failed ")
    assert "ReadTimeout" in heard[0]


def test_live_dry_run_a_read_that_times_out_is_could_not_tell_not_a_fault() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer in time", request=request)

    cfg = config()
    job = job_of(cfg, track_job().event, LIVE).unwrap()
    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        planner = LivePlanner(cfg, client, Target.of(cfg), sleep=lambda _s: None)
        prediction = planner.plan(job, 1)
    assert prediction.kind == COULD_NOT_TELL
    assert "timeout" in (prediction.error or "")
    assert planner.api_calls == READ_ATTEMPTS  # the read was tried again, a little


def test_live_dry_run_never_sends_a_write() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET", request
        return httpx.Response(200, json={"id": 7, "user_key": "abcdefghijkl", "custom_id": "u1"})

    cfg = config()
    job = job_of(cfg, track_job().event, LIVE).unwrap()
    with httpx.Client(transport=httpx.MockTransport(handle)) as client:
        planner = LivePlanner(cfg, client, Target.of(cfg), sleep=lambda _s: None)
        prediction = planner.plan(job, 1)
    assert prediction.would.startswith("would "), prediction
    assert tuple(map(str, prediction.requests)) == (
        "GET https://acme.user.com/api/public/users-by-id/u1/ -> 200",
    )
