"""What the console reads of a ledger (DELIVERY §8): the one module between its pages and the
storage, so that moving to the queue interface's read models is an edit here only.

Every function takes a ledger opened for reading (`Ledger.open_reader`: no lock, WAL) and
runs in a worker thread; each reads one consistent snapshot.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from returns.result import Success

from pipeline.console.reasons import reason
from pipeline.core import paths
from pipeline.core.compose import Job
from pipeline.core.config import Config
from pipeline.core.types import as_text
from pipeline.delivery.incoming import incoming
from pipeline.delivery.ledger import STATUSES, UNFINISHED, Ledger, Row, Status

PROBLEMS: Final[tuple[Status, ...]] = ("failed", "held", "rejected")
SAMPLES: Final = 10
LATENCY_SAMPLE: Final = 1000  # the last deliveries the latency percentiles are taken over
USER_SCAN: Final = 10_000  # events of one user shown at most
HOUR: Final = 3600.0
_NUMBER: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True, slots=True)
class Counts:
    """One app's numbers from its ledger."""

    app: str
    statuses: Mapping[str, int]
    oldest_queued_age: float | None
    latency_p50: float | None
    latency_p95: float | None

    @property
    def queued(self) -> int:
        return sum(self.statuses[status] for status in UNFINISHED)


def counts(book: Ledger, now: float) -> Counts:
    with book.snapshot():
        statuses = book.counts()
        oldest = book.oldest_received() if any(statuses[s] for s in UNFINISHED) else None
        waits = book.latencies(now - HOUR, LATENCY_SAMPLE)
    p50, p95 = _percentiles(waits)
    return Counts(
        book.app,
        statuses,
        None if oldest is None else max(0.0, now - oldest),
        p50,
        p95,
    )


def _percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """p50 and p95 (nearest rank), None when nothing was delivered.

    >>> _percentiles([1.0, 2.0, 3.0, 4.0]), _percentiles([])
    ((2.5, 4.0), (None, None))
    """
    if not values:
        return None, None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1))
    return statistics.median(ordered), ordered[rank]


@dataclass(slots=True)
class Group:
    """The failed, held and rejected events of one app with one reason."""

    app: str
    reason: str
    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    firsts: list[tuple[int, str]] = field(default_factory=list)  # (position, key)

    @property
    def samples(self) -> list[str]:
        return [key for _, key in sorted(self.firsts)[:SAMPLES]]

    def as_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "reason": self.reason,
            "count": self.count,
            "first_seen": self.first_seen or None,
            "last_seen": self.last_seen or None,
            "samples": self.samples,
        }


def failures(book: Ledger) -> list[Group]:
    """The app's failed, held and rejected events grouped by reason, largest group first.

    The ledger sums them up per exact error (SQL counts); the errors are masked and merged
    here. The samples are then the first events of each group by position: read in position
    order, status by status, until every group of that status has its samples."""
    groups: dict[str, Group] = {}
    with book.snapshot():
        for found in book.problem_sums(PROBLEMS):
            why = reason(found.status, found.error or None)
            group = groups.get(why)
            if group is None:
                group = groups[why] = Group(book.app, why)
            group.count += found.count
            if found.first:
                group.first_seen = min(group.first_seen or found.first, found.first)
            group.last_seen = max(group.last_seen, found.last)
        for status in PROBLEMS:
            hungry = {why for why in groups if why.startswith(f"{status}:")}
            for position, key, error in book.problem_stream(status) if hungry else ():
                group = groups.get(reason(status, error or None))
                if group is None or group.reason not in hungry:
                    continue  # stored after the sums were read: shown at the next look
                group.firsts.append((position, key))
                if len(group.firsts) >= SAMPLES:
                    hungry.discard(group.reason)
                    if not hungry:
                        break
    return sorted(groups.values(), key=lambda group: (-group.count, group.reason))


def group_keys(book: Ledger, why: str) -> list[str]:
    """Every key of the group with reason `why`, in position order (what Replay requeues)."""
    with book.snapshot():
        found = book.problems(PROBLEMS)
    chosen = [
        (position, key)
        for key, position, status, error, _ in found
        if reason(status, error or None) == why
    ]
    return [key for _, key in sorted(chosen)]


def replayable(book: Ledger, keys: Sequence[str]) -> list[str]:
    """Of `keys`, those of this app's events a replay may requeue: failed, held or rejected
    (as `usercom requeue --rejected`; a delivered event is never sent again from here)."""
    prefix = f"{book.app}:"
    mine = list(dict.fromkeys(key if key.startswith(prefix) else prefix + key for key in keys))
    with book.snapshot():
        states = book.states(mine)
    return [key for key in mine if key in states and states[key][0] in PROBLEMS]


def event(book: Ledger, key: str) -> Row | None:
    """The event under `key`, with or without its app prefix."""
    return book.find(key)


def user_of(cfg: Config, row: Row) -> str | None:
    """Whose order the event keeps (the userId, else the email), as delivery tells it; for
    a line delivery cannot read, what the raw line names."""
    item = incoming(cfg, row.position, row.line)
    match item.job:
        case Success(Job(lane=str() as lane)):
            return lane.removeprefix("user:")
    try:
        message = json.loads(row.line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict):
        return None
    who = paths.read(message, paths.USER_ID)
    who = who if who is not None else paths.read(message, paths.EMAIL)
    return None if who is None else as_text(who)


def type_of(row: Row) -> str:
    try:
        message = json.loads(row.line)
    except (ValueError, RecursionError):
        return "unreadable"
    kind = message.get("type") if isinstance(message, dict) else None
    return kind if isinstance(kind, str) else "unknown"


@dataclass(frozen=True, slots=True)
class Step:
    """One event of a user's timeline; a held one names the event it waits behind."""

    row: Row
    type: str
    waits_behind: str | None


def timeline(book: Ledger, cfg: Config, user: str) -> list[Step]:
    """The user's events in position order. The ledger keeps no user column: lines that hold
    the id are found by a scan, then each is read as delivery reads it."""
    # The id as a JSON string (escaped or not), and bare when a number could carry it.
    needles = {f'"{user}"'.encode(), json.dumps(user).encode()}
    if _NUMBER.fullmatch(user):
        needles.add(user.encode())
    with book.snapshot():
        rows = {
            row.key: row for needle in needles for row in book.rows_containing(needle, USER_SCAN)
        }
    mine = sorted(
        (row for row in rows.values() if user_of(cfg, row) == user), key=lambda row: row.position
    )
    steps: list[Step] = []
    blocker: str | None = None
    for row in mine:
        waits = blocker if row.status == "held" else None
        if blocker is None and row.status in UNFINISHED and row.status != "held":
            blocker = row.key
        steps.append(Step(row, type_of(row), waits))
    return steps


def has_user(book: Ledger, cfg: Config, user: str) -> bool:
    return bool(timeline(book, cfg, user))


__all__ = [
    "PROBLEMS",
    "STATUSES",
    "Counts",
    "Group",
    "Step",
    "counts",
    "event",
    "failures",
    "group_keys",
    "has_user",
    "replayable",
    "timeline",
    "user_of",
]
