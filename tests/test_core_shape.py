"""The core's shape (issue 6): one composition, one driver, named endpoints, complete errors.

These pin the pieces at their own stage, with no network: the write strategy decides the
identify's requests from one resolved lookup; the driver is the only loop, pumped by any send
function; every request names a catalogue endpoint; an error's status follows from its kind.
"""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import pytest
from helpers import KEY
from returns.result import Failure, Success

from pipeline import DELIVERY, REFERENCE, Final, Reply, prepare
from pipeline.core import errors
from pipeline.core.calls import Request, call
from pipeline.core.compose import prepare_message
from pipeline.core.config import parse_config
from pipeline.core.endpoints import CATALOGUE, EndpointName
from pipeline.core.errors import PipelineError
from pipeline.core.steps import Call
from pipeline.core.types import freeze_object
from pipeline.delivery.identity import IdentityCache
from pipeline.delivery.incoming import read_jsonl
from pipeline.runner import adrive, conversation, drive

CFG = parse_config({"apiKey": KEY, "appSubdomain": "acme"}).unwrap()


def item(message: dict[str, Any]) -> dict[str, Any]:
    return {"message": message, "destination": {"Config": {"apiKey": KEY, "appSubdomain": "acme"}}}


# --- one composition, the write strategy as a parameter ----------------------------------


def test_reference_strategy_looks_the_user_up_then_writes() -> None:
    job = prepare(item({"type": "identify", "userId": "u1"}), REFERENCE).unwrap()
    assert isinstance(job.step, Call)
    assert job.step.request.name == "user_by_id"
    assert job.step.request.subject == "u1"


def test_delivery_strategy_upserts_a_user_named_by_user_id_in_one_call() -> None:
    job = prepare(item({"type": "identify", "userId": "u1", "traits": {"a": 1}}), DELIVERY)
    step = job.unwrap().step
    assert isinstance(step, Final)
    assert step.request.name == "upsert_user"
    assert dict(step.request.body or {}) == {"custom_id": "u1", "a": 1}


def test_delivery_strategy_keeps_the_lookup_when_the_user_is_named_otherwise() -> None:
    message = {
        "type": "identify",
        "userId": "u1",
        "context": {"externalId": [{"type": "userKey", "id": "k1"}]},
    }
    step = prepare(item(message), DELIVERY).unwrap().step
    assert isinstance(step, Call)
    assert (step.request.name, step.request.subject) == ("user_by_key", "k1")


@pytest.mark.parametrize(
    ("message", "lane", "company"),
    [
        ({"type": "track", "userId": "u1", "event": "E"}, "user:u1", None),
        (
            {"type": "identify", "anonymousId": "an1", "traits": {"email": "a@b.co"}},
            "user:an1",
            None,
        ),
        (
            {"type": "group", "userId": 5, "groupId": "g1", "traits": {"name": "G"}},
            "user:5",
            "g1",
        ),
    ],
)
def test_the_job_carries_type_lane_and_company(
    message: dict[str, Any], lane: str, company: str | None
) -> None:
    job = prepare_message(CFG, message, DELIVERY).unwrap()
    assert (job.event.type, job.lane, job.company) == (message["type"], lane, company)


def test_the_spec_order_of_checks_is_kept_by_the_composition() -> None:
    # The event's own field (page url) is reported before a bad lookup choice.
    message = {"type": "page", "userId": "u", "integrations": {"user": {"lookup": "fax"}}}
    assert prepare(item(message)).failure().message == "Parameter url is required"


# --- one driver ----------------------------------------------------------------------------


def _found(request: Request) -> Reply:
    return Reply(200, {"id": 7, "user_key": "k" * 12, "custom_id": "u1"})


def test_drive_feeds_each_answer_and_returns_the_final_request_unsent() -> None:
    seen: list[EndpointName] = []

    def send(request: Request) -> Reply:
        seen.append(request.name)
        return _found(request)

    step = prepare(item({"type": "track", "userId": "u1", "event": "E"})).unwrap().step
    final = drive(Success(step), send).unwrap()
    assert seen == ["user_by_id"]
    assert final.request.name == "event"
    assert dict(final.request.body or {})["user_id"] == 7


def test_adrive_walks_the_same_conversation_as_drive() -> None:
    message = {"type": "group", "userId": "u1", "groupId": "g", "traits": {"name": "G"}}
    step = prepare(item(message)).unwrap().step
    sync_seen: list[EndpointName] = []
    async_seen: list[EndpointName] = []

    def send(request: Request) -> Reply:
        sync_seen.append(request.name)
        return Reply(404) if request.name == "company_by_id" else _found(request)

    async def asend(request: Request) -> Reply:
        async_seen.append(request.name)
        return send(request)

    sync_final = drive(Success(step), send)
    sync_seen_copy = list(sync_seen)
    async_final = asyncio.run(adrive(Success(step), asend))
    assert sync_final == async_final
    assert sync_seen_copy == async_seen == ["user_by_id", "company_by_id", "create_company"]


def test_a_failure_ends_the_conversation_without_a_request() -> None:
    failure: Failure[PipelineError] = Failure(errors.instrumentation("no"))
    talk = conversation(failure)
    with pytest.raises(StopIteration) as done:
        next(talk)
    assert done.value.value == failure


# --- named endpoints -------------------------------------------------------------------------


def test_every_endpoint_name_has_one_catalogue_entry() -> None:
    assert set(CATALOGUE) == set(get_args(EndpointName))
    assert all(name == entry.name for name, entry in CATALOGUE.items())


def test_a_request_renders_from_its_endpoint_and_subject() -> None:
    request = call("add_member", "c/1", None)
    assert (request.method, request.path) == ("POST", ("companies", "c/1", "add_member"))
    assert request.url("https://a.user.com/api/public").endswith("/companies/c%2F1/add_member/")
    assert call("user_by_phone", "+48 1").query == (("phone_number", "+48 1"),)


@pytest.mark.parametrize(("name", "subject"), [("user_by_id", None), ("create_user", "x")])
def test_a_request_without_its_subject_or_with_a_stray_one_is_a_bug(
    name: EndpointName, subject: str | None
) -> None:
    with pytest.raises(ValueError, match=name):
        call(name, subject)


def test_the_identity_cache_learns_from_names_not_paths() -> None:
    cache = IdentityCache()
    user = freeze_object({"id": 7, "key": "k" * 12, "custom_id": "u1", "email": "a@b.co"})
    kept = freeze_object({"id": 7, "key": "k" * 12, "custom_id": "u1"})
    cache.learn(call("user_by_email", "a@b.co"), Reply(200, user))
    assert cache.answer(call("user_by_id", "u1")) == Reply(200, kept)
    assert cache.answer(call("user_by_key", "k" * 12)) == Reply(200, kept)
    assert cache.answer(call("user_by_email", "a@b.co")) == Reply(200, kept)
    assert cache.answer(call("user_by_email", "other@b.co")) is None
    # An update_or_create answer of the real API ({created, id}) names no user key.
    upsert = call("upsert_user", None, freeze_object({"custom_id": "u2"}))
    cache.learn(upsert, Reply(200, freeze_object({"created": True, "id": 9})))
    assert cache.answer(call("user_by_id", "u2")) is None
    company = freeze_object({"id": 3, "custom_id": "g"})
    cache.learn(
        call("create_company", None, freeze_object({"custom_id": "g"})), Reply(201, company)
    )
    assert cache.answer(call("company_by_id", "g")) == Reply(200, company)


def test_the_identity_cache_is_bounded_and_keeps_only_what_flows_read() -> None:
    cache = IdentityCache(max_entries=100)
    for n in range(1_000):
        big = freeze_object(
            {"id": n, "user_key": f"key{n:09d}", "custom_id": f"u{n}", "x": "y" * 999}
        )
        cache.learn(call("user_by_id", f"u{n}"), Reply(200, big))
    assert len(cache.entries) == 100
    assert cache.answer(call("user_by_id", "u0")) is None
    latest = cache.answer(call("user_by_id", "u999"))
    assert latest is not None
    assert latest.body == {"id": 999, "user_key": "key000000999", "custom_id": "u999"}


# --- complete errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "retry"),
    [
        (errors.instrumentation("x"), 400, False),
        (errors.configuration("x"), 400, False),
        (errors.not_found("x"), 400, False),
        (errors.auth("x", 401), 401, False),
        (errors.auth("x", 403), 403, False),
        (errors.aborted("x"), 400, False),
        (errors.throttled("x", 3.0), 429, True),
        (errors.retryable("x"), 500, True),
        (errors.retryable("x", 503), 503, True),
    ],
)
def test_the_status_follows_from_the_kind(error: PipelineError, status: int, retry: bool) -> None:
    assert (error.status, error.retryable) == (status, retry)


@pytest.mark.parametrize(
    ("kind", "answered"),
    [("instrumentation", 503), ("auth", 400), ("retryable", 404), ("throttled", 500)],
)
def test_an_error_with_a_status_its_kind_cannot_have_is_refused(kind: Any, answered: int) -> None:
    with pytest.raises(ValueError, match="carries no status"):
        PipelineError("x", kind, answered)


# --- normalize once at the delivery edge -----------------------------------------------------


def test_an_incoming_event_holds_its_job_and_derives_lane_and_company() -> None:
    lines = [
        '{"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "G"}}',
        '{"type": "alias", "userId": "u1"}',
        "not json",
    ]
    group, alias, broken = list(read_jsonl(lines, CFG))
    assert (group.lane, group.company) == ("user:u1", "g1")
    assert isinstance(group.job, Success)
    assert alias.job is not None
    assert alias.job.failure().message == "Event type alias is not supported"
    assert broken.job is None
    assert broken.problem is not None
    assert broken.problem.startswith("line is not JSON")


def test_errors_render_in_a_notebook_without_the_key() -> None:
    error = errors.auth(f"User.com refused the API key (401): check apiKey {KEY[:4]}…", 401)
    shown = error._repr_html_()
    assert shown.startswith("<pre>PipelineError auth (401): ")
    assert KEY not in shown
