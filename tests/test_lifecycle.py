"""DELIVERY §2: an event's life as one table (pipeline.delivery.lifecycle), pinned row by row."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.delivery import ledger, lifecycle, outcome
from pipeline.delivery.lifecycle import (
    FINISHED,
    STATUSES,
    TRANSITIONS,
    UNFINISHED,
    Happening,
    LifecycleError,
    Status,
    files,
    happening_of,
    next_status,
)
from pipeline.delivery.outcome import Outcome, Summary

H = Happening

# Every row of the table, written out once more by hand from DELIVERY §2, §4 and §6.
EXPECTED: dict[tuple[Status | None, Happening], tuple[Status, bool]] = {
    (None, H.ADMITTED): ("pending", True),
    (None, H.ADMITTED_CHANGED): ("pending", True),
    **{(s, H.ADMITTED): (s, False) for s in STATUSES},
    **{(s, H.ADMITTED_CHANGED): ("pending", True) for s in STATUSES},
    **{(s, H.DELIVERED): ("delivered", True) for s in UNFINISHED},
    **{(s, H.REJECTED): ("rejected", True) for s in UNFINISHED},
    **{(s, H.FAILED): ("failed", True) for s in UNFINISHED},
    ("pending", H.HELD): ("held", True),
    ("failed", H.HELD): ("held", True),
    ("held", H.HELD): ("held", False),
    **{(s, H.DEFERRED): (s, False) for s in UNFINISHED},
    **{(s, H.REQUEUED): ("pending", True) for s in STATUSES if s != "pending"},
    ("failed", H.GIVEN_UP): ("failed", False),
}


def test_the_statuses_are_the_five_of_delivery_2_in_the_ledgers_order() -> None:
    assert STATUSES == ("pending", "delivered", "rejected", "failed", "held")
    assert FINISHED == ("delivered", "rejected")
    assert UNFINISHED == ("pending", "failed", "held")


def test_the_table_has_exactly_the_expected_rows() -> None:
    assert set(TRANSITIONS) == set(EXPECTED)


@pytest.mark.parametrize(("start", "happening"), list(EXPECTED), ids=str)
def test_every_row(start: Status | None, happening: Happening) -> None:
    after, writes = EXPECTED[(start, happening)]
    assert next_status(start, happening) == after
    assert files(start, happening) is writes
    assert re.match(r"§\d", TRANSITIONS[(start, happening)].cites)


@pytest.mark.parametrize(
    ("start", "happening"),
    [
        (s, h)
        for s in (None, *STATUSES)
        for h in Happening
        if (s, h) not in EXPECTED  # every pair the table leaves out
    ],
    ids=str,
)
def test_what_has_no_row_cannot_happen(start: Status | None, happening: Happening) -> None:
    with pytest.raises(LifecycleError, match=happening.value):
        next_status(start, happening)
    assert files(start, happening) is False


@pytest.mark.parametrize("start", FINISHED)
def test_a_finished_status_only_leaves_by_requeue_or_changed_content(start: Status) -> None:
    leaving = {h for (s, h), rule in TRANSITIONS.items() if s == start and rule.after != start}
    assert leaving == {H.REQUEUED, H.ADMITTED_CHANGED}


@given(st.lists(st.sampled_from(list(Happening)), max_size=40))
def test_never_two_finished_outcomes_for_one_content(walk: list[Happening]) -> None:
    """Whatever happens, in any order: between two admissions (or requeues) of one content an
    event takes at most one finished outcome, and no happening without a row is taken."""
    status: Status | None = None
    finished_since_pending = 0
    for happening in walk:
        if (status, happening) not in TRANSITIONS:
            continue
        status = next_status(status, happening)
        if status == "pending":
            finished_since_pending = 0
        finished_since_pending += happening in (H.DELIVERED, H.REJECTED)
        assert finished_since_pending <= 1


def test_each_outcome_status_names_its_happening() -> None:
    assert happening_of("delivered") is H.DELIVERED
    assert happening_of("rejected") is H.REJECTED
    assert happening_of("failed") is H.FAILED
    assert happening_of("held") is H.HELD
    assert happening_of("pending") is H.DEFERRED
    assert happening_of("planned") is None  # a dry run files nothing


def test_the_ledger_and_the_outcomes_share_the_one_vocabulary() -> None:
    assert (ledger.STATUSES, ledger.UNFINISHED, ledger.FINISHED) == (
        STATUSES,
        UNFINISHED,
        FINISHED,
    )
    assert outcome.UNFINISHED == UNFINISHED
    assert ledger.Status is lifecycle.Status


def test_a_summary_counts_every_unfinished_status_of_the_table() -> None:
    summary = Summary()
    for status in STATUSES:
        summary.add(Outcome(f"k-{status}", status))
    assert summary.unfinished == len(UNFINISHED)
    assert not summary.all_delivered
