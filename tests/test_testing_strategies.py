"""pipeline.testing's public strategies produce what they promise (issue 9)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Success

import pipeline.testing
from pipeline import Destination, prepare
from pipeline.core.config import parse_config
from pipeline.testing import configs, events, valid_configs, valid_events

CONFIG = {"apiKey": "k" * 64, "appSubdomain": "acme"}
T = TypeVar("T")
# These tests ask whether a strategy can produce a kind of value at all: the first one found
# answers (replayed from the example database when a run found it before), shrinking it to the
# smallest such value (hypothesis's default) would only cost time.
FIRST_FOUND = settings(phases=(Phase.reuse, Phase.generate), max_examples=2000)


def produces(strategy: st.SearchStrategy[T], condition: Callable[[T], bool]) -> T:
    return find(strategy, condition, settings=FIRST_FOUND)


def _type(message: Any) -> str:
    kind = message.get("type") if isinstance(message, dict) else None
    return kind.lower() if isinstance(kind, str) else ""


@pytest.mark.parametrize("kind", ["identify", "track", "page", "group", "screen", "alias"])
def test_events_produce_every_type(kind: str) -> None:
    assert _type(produces(events(), lambda m: _type(m) == kind)) == kind


def test_events_produce_valid_and_invalid_messages() -> None:
    def outcome(message: dict[str, Any]) -> bool:
        return isinstance(prepare({"message": message, "destination": {"Config": CONFIG}}), Success)

    produces(events(), outcome)
    produces(events(), lambda m: not outcome(m))


@pytest.mark.parametrize("kind", ["identify", "track", "page", "group"])
def test_valid_events_cover_each_supported_type(kind: str) -> None:
    assert _type(produces(valid_events(), lambda m: _type(m) == kind)) == kind


# The profile sets how many (HYPOTHESIS_PROFILE: dev 60, ci 300).
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(valid_events(), valid_configs())
def test_valid_events_pass_every_check_that_needs_no_answer(
    message: dict[str, Any], config: dict[str, Any]
) -> None:
    shown = Destination(config).plan(message)
    assert not isinstance(shown, pipeline.PipelineError), shown


def test_configs_produce_valid_and_invalid_ones() -> None:
    produces(configs(), lambda c: isinstance(parse_config(c), Success))
    produces(configs(), lambda c: isinstance(parse_config(c), Failure))


def test_the_package_names_them_lazily() -> None:
    assert set(pipeline.testing.__all__) >= {"events", "valid_events", "configs", "FakeUserCom"}
    with pytest.raises(AttributeError):
        _ = pipeline.testing.nothing_like_this
