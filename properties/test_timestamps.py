"""SPEC §6 (§12.14): a track timestamp becomes whole seconds since the epoch, rounded down.

ISO-8601 strings honour their offset (none means UTC); numbers and digit strings are seconds,
or milliseconds from 10^11 on; anything else is left out with a warning. The expected values
come from `strategies.timestamps`, which computes them without parsing (datetime arithmetic
and exact fractions).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline
from pipeline.core.convert import epoch_seconds
from pipeline.testing.strategies import (
    iso_timestamps,
    json_values,
    timestamps,
    unruly_numbers,
    valid_configs,
)
from properties import fakes, oracle


@given(timestamps())
def test_epoch_seconds_matches_an_independent_computation(case: tuple[Any, int | None]) -> None:
    value, expected = case
    seconds, warning = epoch_seconds(value)
    if expected is None:
        assert seconds is None
        assert warning is not None
    else:
        assert type(seconds) is int
        assert seconds == expected
        assert warning is None


@given(
    st.one_of(
        unruly_numbers,
        iso_timestamps().map(lambda pair: pair[0]),
        json_values(),
        st.floats(allow_nan=False),
    )
)
def test_epoch_seconds_never_raises(value: Any) -> None:
    """SPEC §6: a timestamp converts or is left out with a warning; it never crashes."""
    seconds, warning = epoch_seconds(value)
    assert (type(seconds) is int and warning is None) or (seconds is None and warning)


_ABSENT = st.sampled_from([None, "", "MISSING"])


@st.composite
def track_items(draw: st.DrawFn) -> tuple[dict[str, Any], int | None]:
    """A track event with a timestamp list of SPEC §2, and the seconds it should give."""
    message: dict[str, Any] = {"type": "track", "event": "Order Completed", "userId": "u-1"}
    first = draw(st.one_of(_ABSENT, timestamps()))
    second = draw(st.one_of(_ABSENT, timestamps()))
    expected: int | None = None
    for key, drawn in (("originalTimestamp", second), ("timestamp", first)):
        if drawn == "MISSING":
            continue
        value, seconds = drawn if isinstance(drawn, tuple) else (drawn, None)
        message[key] = value
        if oracle.present(value):
            expected = seconds  # the first present path decides, even when it fails (§2)
    item = {"message": message, "destination": {"Config": draw(valid_configs())}}
    return item, expected


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=track_items())
def test_track_timestamps_are_whole_seconds(
    case: tuple[dict[str, Any], int | None], caplog: pytest.LogCaptureFixture
) -> None:
    item, expected = case
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = pipeline.process(item, transport=fakes.user_com().transport)
    assert result["statusCode"] == 200, result
    body = result["output"]["body"]["JSON"]
    stamps = [item["message"].get(k) for k in ("timestamp", "originalTimestamp")]
    if expected is None:
        assert "timestamp" not in body
        if any(oracle.present(s) for s in stamps):
            assert any("timestamp" in r.getMessage().lower() for r in caplog.records)
    else:
        assert type(body["timestamp"]) is int
        assert body["timestamp"] == expected
