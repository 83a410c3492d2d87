"""SPEC §10 and §11: every failure carries the status and category of the §10 table, in the
rudder-transformer envelopes, and validation failures never cost a request (§12.12)."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

import pipeline
from pipeline.testing.strategies import any_items, items, json_values, messages
from properties import fakes

# SPEC §3-§8: the exact texts of event errors.
EVENT_ERRORS = re.compile(
    "|".join(
        [
            r"Event type is required",
            r"Event type .* is not supported",
            r'Missing required value from "userId"',
            r"Parameter (event|url|path|timestamp|name|groupId) is required",
            r"Lookup field : (email|phone) value is not present",
            r"Lookup field : .* is not supported for this destination",
            r"Default lookup field : email value is empty",
        ]
    ),
    re.DOTALL,
)
# SPEC §4, §6-§8: "user not found" errors (400, network/aborted, meta instrumentation).
NOT_FOUND = {
    "No user found for a given lookup field",
    "Multiple users obtained for a given lookup field",
    "No user found with given lookup field, Track event cannot be completed if there is no "
    "valid user",
    "No user found with given lookup field. Page event cannot be completed if there is no "
    "valid user",
    "No user found with given userId",
}
COMMON_TAGS = {"destType": "USER", "module": "destination", "implementation": "native"}


def assert_in_the_table(status: int, category: str, error_type: str, message: str) -> None:
    """One row of SPEC §10 holds this failure."""
    match (category, error_type):
        case ("dataValidation", "instrumentation"):
            assert status == 400
            assert EVENT_ERRORS.fullmatch(message), message
        case ("dataValidation", "configuration"):
            assert status == 400
        case ("network", "aborted"):
            assert status in (400, 401, 403)
            if message in NOT_FOUND:
                assert status == 400
        case ("network", "throttled"):
            assert status == 429
        case ("network", "retryable"):
            assert 500 <= status <= 599
        case _:
            raise AssertionError(f"not a SPEC §10 category: {category}/{error_type}")


@given(any_items())
def test_prepare_fails_only_with_event_or_config_errors(item: Any) -> None:
    match pipeline.prepare(item):
        case Failure(error):
            assert error.category == "dataValidation"
            assert error.retryable is False
            assert_in_the_table(error.status, error.category, error.error_type, error.message)
        case Success(job):
            assert isinstance(job, pipeline.Job)


@given(any_items(), fakes.answer_scripts)
def test_every_failure_envelope_is_a_row_of_the_table(
    item: Any, answers: tuple[fakes.AnswerSpec, ...]
) -> None:
    recorder = fakes.scripted(answers)
    result = pipeline.process(item, transport=recorder.transport)
    if result["statusCode"] == 200:
        assert set(result) <= {"output", "statusCode", "metadata"}
        return
    tags = result["statTags"]
    assert {k: tags[k] for k in COMMON_TAGS} == COMMON_TAGS
    assert tags["feature"] == "processor"
    assert set(tags) <= {*COMMON_TAGS, "feature", "errorCategory", "errorType", "meta"}
    message = result["error"]
    assert isinstance(message, str)
    assert message
    assert_in_the_table(result["statusCode"], tags["errorCategory"], tags["errorType"], message)
    assert (tags.get("meta") == "instrumentation") == (message in NOT_FOUND)
    if tags["errorCategory"] == "dataValidation":
        assert recorder.requests == [], "a validation failure must not cost a request (§12.12)"
    else:
        assert recorder.requests, "a network failure needs a request"
    if isinstance(item, dict) and "metadata" in item:
        assert result["metadata"] == item["metadata"]


# Answers to a lookup that are neither "found" (200 + object) nor "not found" (404).
unusable_answers = st.one_of(
    st.builds(
        fakes.Reply,
        st.integers(min_value=100, max_value=599).filter(lambda s: s not in (200, 404)),
        st.one_of(st.just(b""), json_values(max_leaves=4).map(lambda v: json.dumps(v).encode())),
    ),
    st.builds(
        fakes.Reply,
        st.just(200),
        st.one_of(
            st.just(b""),
            st.just(b"<html>"),
            st.one_of(st.lists(st.integers()), st.text(), st.integers()).map(
                lambda v: json.dumps(v).encode()
            ),
        ),
    ),
    st.sampled_from(["connect", "timeout", "protocol"]),
)


def _row_for(answer: fakes.AnswerSpec) -> tuple[int, str, str]:
    """SPEC §4 / §10: what a lookup answer means, as (status, category, type)."""
    if not isinstance(answer, fakes.Reply):
        return 500, "network", "retryable"
    if answer.status in (401, 403):
        return answer.status, "network", "aborted"
    if answer.status == 429:
        return 429, "network", "throttled"
    if 500 <= answer.status <= 599:
        return answer.status, "network", "retryable"
    return 400, "network", "aborted"


@given(items(message=messages(with_lookup_options=False, with_user_id=True)), unusable_answers)
def test_what_user_com_answers_decides_the_row(
    item: dict[str, Any], answer: fakes.AnswerSpec
) -> None:
    """SPEC §4: every first call (a lookup) that gets this answer fails as the table says."""
    if isinstance(pipeline.prepare(item), Failure):
        return
    result = pipeline.process(item, transport=fakes.scripted((answer,)).transport)
    tags = result.get("statTags", {})
    assert (result["statusCode"], tags.get("errorCategory"), tags.get("errorType")) == (
        _row_for(answer)
    ), result


@given(st.lists(st.one_of(items(), any_items()), max_size=5))
def test_router_answers_each_item_in_order_like_the_processor(batch: list[Any]) -> None:
    """SPEC §11: one router item per input, in order, matching the processor's answer."""
    routed = pipeline.process_router(batch, transport=fakes.user_com().transport)
    assert len(routed) == len(batch)
    for item, out in zip(batch, routed, strict=True):
        alone = pipeline.process(item, transport=fakes.user_com().transport)
        assert out["statusCode"] == alone["statusCode"]
        assert out["batched"] is False
        has_metadata = isinstance(item, dict) and "metadata" in item
        assert ("metadata" in out) == has_metadata
        if has_metadata:
            assert out["metadata"] == [item["metadata"]]
        assert out["destination"] == (item.get("destination") if isinstance(item, dict) else None)
        if alone["statusCode"] == 200:
            expected = {k: v for k, v in alone["output"].items() if k != "userId"}
            assert out["batchedRequest"] == expected
        else:
            assert out["error"] == alone["error"]
            assert out["statTags"] == {**alone["statTags"], "feature": "router"}
