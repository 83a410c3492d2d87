"""DELIVERY §3: where requests go (a Target holds the origin, the API base is derived) and
the one meaning of an answer that the engine, the run-level faults and the operator views read."""

from __future__ import annotations

import pytest
from e2e_helpers import config
from helpers import KEY

from pipeline.cli.ledger_views import gloss
from pipeline.core.answers import FAILING, Answer, Kind, Reply, Unreachable, meaning
from pipeline.core.calls import call
from pipeline.delivery.engine import _user_com_failed
from pipeline.delivery.faults import probe_fault, probe_verdict, run_fault
from pipeline.delivery.outcome import Exchange
from pipeline.runner import Target

# --- the target ------------------------------------------------------------------------------


def test_a_target_holds_the_origin_and_derives_the_api_base() -> None:
    sandbox = Target("http://127.0.0.1:8000", KEY)
    assert sandbox.origin == "http://127.0.0.1:8000"
    assert sandbox.base_url == "http://127.0.0.1:8000/api/public"
    assert Target("http://127.0.0.1:8000/", KEY) == sandbox  # a trailing slash is no path
    assert KEY not in repr(sandbox)
    assert "origin='http://127.0.0.1:8000'" in repr(sandbox)


def test_a_configs_target_is_its_app_unless_another_origin_is_given() -> None:
    cfg = config()
    assert Target.of(cfg).origin == f"https://{cfg.subdomain}.user.com"
    assert Target.of(cfg).base_url == cfg.base_url
    assert Target.of(cfg, "http://localhost:9").base_url == "http://localhost:9/api/public"


def test_faults_name_the_origin_requests_went_to() -> None:
    target = Target("http://127.0.0.1:8000", KEY)
    fault = run_fault(call("create_user"), Reply(401), target)
    assert fault is not None
    assert "at http://127.0.0.1:8000:" in fault
    unreachable = probe_fault(Unreachable("connection", "ConnectError"), target)
    assert unreachable is not None
    assert "reached at http://127.0.0.1:8000 (" in unreachable


# --- what an answer means --------------------------------------------------------------------

KINDS: list[tuple[Answer, Kind]] = [
    (Reply(200), "ok"),
    (Reply(201), "ok"),
    (Reply(204), "ok"),
    (Reply(301), "redirect"),
    (Reply(308), "redirect"),
    (Reply(401), "refused"),
    (Reply(403), "refused"),
    (Reply(404), "not found"),
    (Reply(429), "throttled"),
    (Reply(400), "client error"),
    (Reply(422), "client error"),
    (Reply(500), "server error"),
    (Reply(503), "server error"),
    (Reply(601), "server error"),
    (Reply(100), "odd"),
    (Unreachable("timeout", "ReadTimeout"), "timeout"),
    (Unreachable("timeout", "WriteTimeout"), "timeout"),
    (Unreachable("timeout", "PoolTimeout"), "timeout"),
    (Unreachable("timeout", "ConnectTimeout"), "unreachable"),
    (Unreachable("connection", "ConnectError"), "unreachable"),
    (Unreachable("connection", "RemoteProtocolError"), "lost"),
    (Unreachable("connection", "ReadError"), "lost"),
    (Unreachable("connection"), "lost"),
]


@pytest.mark.parametrize(("answer", "kind"), KINDS, ids=str)
def test_the_meaning_of_each_answer(answer: Answer, kind: Kind) -> None:
    assert meaning(answer) == kind


@pytest.mark.parametrize(("answer", "kind"), KINDS, ids=str)
def test_the_engine_counts_towards_an_outage_exactly_the_failing_kinds(
    answer: Answer, kind: Kind
) -> None:
    assert _user_com_failed(answer) is (kind in FAILING)


@pytest.mark.parametrize(("answer", "kind"), KINDS, ids=str)
def test_a_run_fault_is_a_refused_key_a_redirect_or_a_missing_collection(
    answer: Answer, kind: Kind
) -> None:
    target = Target.of(config())
    collection, lookup = call("create_user"), call("user_by_id", "u1")
    assert (run_fault(collection, answer, target) is not None) is (
        kind in ("refused", "redirect", "not found")
    )
    assert (run_fault(lookup, answer, target) is not None) is (kind in ("refused", "redirect"))
    if kind in ("refused", "redirect"):
        assert probe_verdict(answer, target)[0] == "fault"


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (200, "ok"),
        (401, "key refused"),
        (403, "key refused"),
        (429, "throttled"),
        (422, "content refused"),
        (503, "User.com failed"),
        (302, "unexpected"),
        (100, "unexpected"),
    ],
)
def test_the_operator_views_gloss_an_answer_by_its_meaning(status: int, words: str) -> None:
    assert gloss(Exchange("event", "POST", "", str(status))) == words
