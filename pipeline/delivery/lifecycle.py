"""An event's life in the ledger as data (DELIVERY §2): its statuses and what moves it.

In the style of h11's state machine: the rules are one table keyed by (status, happening),
each row citing the contract, and every other module asks the table instead of keeping its
own list of statuses. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final, Literal, TypeGuard, get_args

__all__ = [
    "FINISHED",
    "SETTLED",
    "STATUSES",
    "TRANSITIONS",
    "UNFINISHED",
    "Happening",
    "LifecycleError",
    "Reported",
    "Rule",
    "Status",
    "filed_status",
    "files",
    "happening_of",
    "is_status",
    "next_status",
    "rule",
]

Status = Literal["pending", "delivered", "rejected", "failed", "held"]
# What an outcome may say: a dry run plans an event and never files it (DELIVERY §4).
Reported = Status | Literal["planned"]

# The order every listing and message shows them in.
STATUSES: Final[tuple[Status, ...]] = get_args(Status)
FINISHED: Final[tuple[Status, ...]] = ("delivered", "rejected")
UNFINISHED: Final[tuple[Status, ...]] = tuple(s for s in STATUSES if s not in FINISHED)
# What a run's attempt ends in (finished or not); `pending` is what it did not reach.
SETTLED: Final[tuple[Status, ...]] = tuple(s for s in STATUSES if s != "pending")


class Happening(Enum):
    """What can happen to an event once it is read."""

    ADMITTED = "admitted"  # stored; an already known key with the same content changes nothing
    ADMITTED_CHANGED = "admitted-changed"  # a known key arrives with other content
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"
    HELD = "held"
    DEFERRED = "deferred"  # not attempted now: the run stopped, or a retry is not due yet
    REQUEUED = "requeued"  # `usercom requeue`
    GIVEN_UP = "given up"  # serve: failed for longer than --give-up-after


class LifecycleError(ValueError):
    """A happening the table has no row for (a bug: two finished outcomes, say)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """Where a happening takes an event, whether the ledger must write it, and why."""

    after: Status
    writes: bool
    cites: str


_A, _C = Happening.ADMITTED, Happening.ADMITTED_CHANGED
_D, _R, _F, _H = Happening.DELIVERED, Happening.REJECTED, Happening.FAILED, Happening.HELD
_W, _Q, _G = Happening.DEFERRED, Happening.REQUEUED, Happening.GIVEN_UP

# None is a key the ledger does not hold yet.
_ROWS: Final[dict[tuple[Status | None, Happening], Rule]] = {
    (None, _A): Rule("pending", True, "§2 pending: read and stored, no outcome yet"),
    (None, _C): Rule("pending", True, "§2 pending: an unknown key has nothing to differ from"),
    ("pending", _A): Rule("pending", False, "§4 keys: identical events are one event"),
    ("failed", _A): Rule("failed", False, "§4 keys: identical events are one event"),
    ("held", _A): Rule("held", False, "§4 keys: identical events are one event"),
    ("delivered", _A): Rule("delivered", False, "§2 final means final for that content"),
    ("rejected", _A): Rule("rejected", False, "§2 final means final for that content"),
    ("pending", _C): Rule("pending", True, "§2 the ledger keeps the latest content"),
    ("failed", _C): Rule("pending", True, "§2 an edited event is attempted again"),
    ("held", _C): Rule("pending", True, "§2 an edited event is attempted again"),
    ("delivered", _C): Rule("pending", True, "§2 final only for that content: sent again"),
    ("rejected", _C): Rule("pending", True, "§2 final only for that content: sent again"),
    ("pending", _D): Rule("delivered", True, "§2 delivered: the final request got a 2xx"),
    ("failed", _D): Rule("delivered", True, "§2 failed: tried again on re-run"),
    ("held", _D): Rule("delivered", True, "§2 held: tried again, in order, on re-run"),
    ("pending", _R): Rule("rejected", True, "§2 rejected: can never succeed as it is"),
    ("failed", _R): Rule("rejected", True, "§2 rejected: can never succeed as it is"),
    ("held", _R): Rule("rejected", True, "§2 rejected: can never succeed as it is"),
    ("pending", _F): Rule("failed", True, "§2 failed: retryable trouble outlasted the budget"),
    ("failed", _F): Rule("failed", True, "§2 failed again: one more failure counted"),
    ("held", _F): Rule("failed", True, "§2 failed: retryable trouble outlasted the budget"),
    ("pending", _H): Rule("held", True, "§2 held: an earlier event of its user did not finish"),
    ("failed", _H): Rule("held", True, "§2 held: an earlier event of its user did not finish"),
    ("held", _H): Rule("held", False, "§2 held stays held: its first blocker is kept"),
    ("pending", _W): Rule("pending", False, "§2 pending: the run stopped first"),
    ("failed", _W): Rule("failed", False, "§6 a failed event is retried later, with backoff"),
    ("held", _W): Rule("held", False, "§2 held: tried again, in order, on re-run"),
    ("failed", _Q): Rule("pending", True, "§4 requeue: tried again"),
    ("held", _Q): Rule("pending", True, "§4 requeue: tried again"),
    ("delivered", _Q): Rule("pending", True, "§4 requeue of a named key: sent again"),
    ("rejected", _Q): Rule("pending", True, "§2 --retry-rejected / requeue: as it is"),
    ("failed", _G): Rule("failed", False, "§6 past --give-up-after it stays failed"),
}
TRANSITIONS: Final[Mapping[tuple[Status | None, Happening], Rule]] = MappingProxyType(_ROWS)

_BY_OUTCOME: Final[Mapping[str, Happening]] = MappingProxyType(
    {
        "delivered": Happening.DELIVERED,
        "rejected": Happening.REJECTED,
        "failed": Happening.FAILED,
        "held": Happening.HELD,
        "pending": Happening.DEFERRED,
    }
)


def rule(status: Status | None, happening: Happening) -> Rule:
    """The table's row, or LifecycleError naming what has no row."""
    found = TRANSITIONS.get((status, happening))
    if found is None:
        raise LifecycleError(f"{happening.value!r} cannot happen to a {status or 'new'} event")
    return found


def next_status(status: Status | None, happening: Happening) -> Status:
    return rule(status, happening).after


def files(status: Status | None, happening: Happening) -> bool:
    """Whether the ledger writes this happening: False for no row and for a row that keeps
    the event as it is (held twice, deferred, given up, a duplicate)."""
    found = TRANSITIONS.get((status, happening))
    return found is not None and found.writes


def happening_of(reported: Reported) -> Happening | None:
    """What an outcome tells the ledger; None for a dry run's plan, which is never filed."""
    return _BY_OUTCOME.get(reported)


def is_status(value: str) -> TypeGuard[Status]:
    return value in STATUSES


def filed_status(reported: Reported) -> Status:
    """The status an outcome is filed as; LifecycleError for a dry run's plan."""
    if not is_status(reported):
        raise LifecycleError(f"a {reported!r} outcome is never filed")
    return reported
