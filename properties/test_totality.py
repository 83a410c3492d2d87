"""Totality, purity and determinism: no input raises, none is mutated, same in -> same out.

SPEC §10: "Every failure is a value, never an uncaught exception". DESIGN §1: stages are pure.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

import pipeline
from pipeline.testing.strategies import (
    any_items,
    iso_timestamps,
    items,
    json_values,
    messages,
    surrogate_text,
    unruly_numbers,
    valid_configs,
)
from properties import fakes


def _everything(item: Any, answers: tuple[fakes.AnswerSpec, ...]) -> tuple[Any, ...]:
    """Run every public entry point over the item; return what each gave."""
    prepared = pipeline.prepare(item)
    assert isinstance(prepared, Success | Failure)
    planned = pipeline.plan(item)
    assert isinstance(planned, pipeline.Plan | pipeline.PipelineError)
    processed = pipeline.process(item, transport=fakes.scripted(answers).transport)
    assert isinstance(processed, dict)
    assert processed["statusCode"] == 200 or "error" in processed
    routed = pipeline.process_router([item], transport=fakes.scripted(answers).transport)
    assert len(routed) == 1
    return prepared, str(planned), processed, routed


@given(any_items(), fakes.answer_scripts)
def test_no_input_and_no_answer_makes_anything_raise(
    item: Any, answers: tuple[fakes.AnswerSpec, ...]
) -> None:
    _everything(item, answers)


@given(
    st.one_of(json_values(), messages(), st.just(None)),
    st.one_of(json_values(), valid_configs()),
    fakes.answer_scripts,
)
def test_arbitrary_message_and_config_never_raise(
    message: Any, config: Any, answers: tuple[fakes.AnswerSpec, ...]
) -> None:
    _everything({"message": message, "destination": {"Config": config}}, answers)


@given(items(message=messages(with_lookup_options=False, with_user_id=True)), fakes.answer_scripts)
def test_realistic_items_never_raise_whatever_user_com_answers(
    item: dict[str, Any], answers: tuple[fakes.AnswerSpec, ...]
) -> None:
    _everything(item, answers)


@given(items(), surrogate_text, st.sampled_from(["userId", "email", "event", "groupId"]))
def test_strings_that_are_valid_json_but_not_utf8_never_raise(
    item: dict[str, Any], text: str, where: str
) -> None:
    """`json.loads('"\\ud800"')` is a str with a lone surrogate; it must not crash a request."""
    message = item["message"]
    if where == "email":
        message.setdefault("traits", {})
        if isinstance(message["traits"], dict):
            message["traits"]["email"] = text
    else:
        message[where] = text
    _everything(item, (fakes.Reply(404),))


@given(
    items(message=messages(types=("track",), with_lookup_options=False, with_user_id=True)),
    st.one_of(unruly_numbers, iso_timestamps().map(lambda pair: pair[0])),
    st.sampled_from(["timestamp", "originalTimestamp"]),
)
def test_odd_timestamps_never_raise(item: dict[str, Any], stamp: str, where: str) -> None:
    """Digit strings past float range, ISO instants at the ends of the calendar (SPEC §6)."""
    item["message"]["event"] = "Order Completed"
    item["message"].pop("timestamp", None)
    item["message"][where] = stamp
    _everything(item, (fakes.Reply(200, b'{"id": 1}'),))


@given(any_items(), fakes.answer_scripts)
def test_input_is_never_mutated(item: Any, answers: tuple[fakes.AnswerSpec, ...]) -> None:
    before = copy.deepcopy(item)
    _everything(item, answers)
    assert item == before


@given(any_items(), fakes.answer_scripts)
def test_same_input_same_output_same_requests(
    item: Any, answers: tuple[fakes.AnswerSpec, ...]
) -> None:
    first, second = fakes.scripted(answers), fakes.scripted(answers)
    out1 = pipeline.process(item, transport=first.transport)
    out2 = pipeline.process(copy.deepcopy(item), transport=second.transport)
    assert out1 == out2
    assert first.wire() == second.wire()
    assert str(pipeline.plan(item)) == str(pipeline.plan(copy.deepcopy(item)))
    assert repr(pipeline.prepare(item)) == repr(pipeline.prepare(copy.deepcopy(item)))


@given(st.lists(items(), min_size=1, max_size=4), items())
def test_no_state_leaks_between_events(earlier: list[dict[str, Any]], item: dict[str, Any]) -> None:
    """SPEC §12.11: what ran before (other events, other destinations) changes nothing."""
    alone = fakes.user_com()
    expected = pipeline.process(item, transport=alone.transport)
    for other in earlier:
        pipeline.process(other, transport=fakes.user_com().transport)
    after = fakes.user_com()
    assert pipeline.process(item, transport=after.transport) == expected
    assert after.wire() == alone.wire()
