"""What one run delivers (DELIVERY §2 "the ledger is a queue", §4): the queue's unfinished
events in position order, then its input's new or changed ones, each admitted (stored and
committed) before it is handed over.

The rules of admission are the queue's (`queue.admission`); what stays here is what only one
input knows: an event read twice in it is one event, and a later version of one read before
it (or still queued) is rejected under its own key (`incoming.repeated`), so the first
version is the event and a re-run of the same input sends nothing new.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO, Final

from pipeline.core.config import Config
from pipeline.delivery.incoming import (
    MAX_EVENT_BYTES,
    FirstSeen,
    Incoming,
    LineReader,
    incoming,
    repeated,
    stored,
)
from pipeline.delivery.lifecycle import FINISHED
from pipeline.delivery.outcome import Summary
from pipeline.delivery.queue import Admit, Admitted, Arrival, DeliveryQueue, Queued

TAKE_PAGE: Final = 500  # unfinished events read per `take`
# Events read, stored and committed pending as one group before any of them is handed over:
# one commit per event cost more than the rest of its bookkeeping (issue 18.2).
GROUP_EVENTS: Final = 64

__all__ = ["GROUP_EVENTS", "ReadAhead", "feed", "unfinished"]


@dataclass(slots=True)
class ReadAhead:
    """The events of the group being handed over: stored and committed, not handed yet. What
    is left here when the run stops is pending on disk, and the caller reports it so."""

    events: list[Incoming] = field(default_factory=list)


def unfinished(queue: DeliveryQueue) -> list[Queued]:
    """Every unfinished event the queue hands this run, in position order, read before any
    input is admitted: what the input adds joins the back and is not the queue's "first"."""
    taken: list[Queued] = []
    after = 0
    while page := queue.take(after, TAKE_PAGE):
        taken.extend(page)
        after = page[-1].row.position
    return taken


def feed(
    source: IO[bytes],
    cfg: Config,
    queue: DeliveryQueue | None,
    summary: Summary,
    seen: FirstSeen,
    *,
    retry_rejected: bool,
    counted: Callable[[Incoming], None],
    ahead: ReadAhead | None = None,
    commit: Callable[[], None] | None = None,
) -> Iterator[Incoming]:
    """The queue's unfinished events, then the input's new or changed ones (`counted` hears
    of each one handed over). Events read are admitted in groups of up to GROUP_EVENTS, and
    each group is committed (`commit`, default the queue's) before any of it is yielded, so
    none is attempted without its row on disk; `ahead` holds what a group has not handed yet.
    Only events finished by an *earlier* run count as skipped (`summary.skipped`); events
    edited since then are sent again (`summary.changed`); where the input breaks off is
    `summary.broken_input`."""
    taken: dict[str, tuple[str, int]] = {}
    if queue is not None:
        for queued in unfinished(queue):
            row = queued.row
            taken[row.key] = (row.content_hash, row.position)
            event = stored(cfg, row.key, row.content_hash, row.position, row.line, row.error)
            counted(event)
            yield event
    group = (ahead or ReadAhead()).events
    commit_group = commit or (_nothing if queue is None else queue.commit)
    first_new: int | None = None  # positions from here on were given by this run
    reader = LineReader(source)
    position = 0
    for line in reader:
        position += 1
        read = incoming(cfg, position, line, MAX_EVENT_BYTES)
        read_before = seen.get(read.key, read.content_hash)
        event = _first_version(read, read_before, taken)
        # One look per event read: only a repeat (another key) is looked up again.
        if event is not read:
            read_before = seen.get(event.key, event.content_hash)
        if read_before is not None:
            continue  # read twice in this file: one event
        if queue is not None:
            admitted = _admit(queue, event, retry_rejected and event.key not in taken)
            before = admitted.before
            if before is not None and admitted.verdict is not Admit.CHANGED:
                this_run = event.key in taken or (
                    first_new is not None and before.position >= first_new
                )
                if admitted.verdict is not Admit.RETRIED:
                    if not this_run and before.status in FINISHED:
                        summary.skipped[before.status] += 1
                    seen.add(event.key, event.content_hash, before.position)
                    continue  # finished earlier, or queued above
            if admitted.verdict is Admit.REPEATED:  # filed rejected under its own key already
                event = replace(event, key=admitted.key, job=None, problem=admitted.rejected)
            summary.changed += admitted.verdict is Admit.CHANGED
            first_new = admitted.position if first_new is None else first_new
            event = replace(event, position=admitted.position)
        seen.add(event.key, event.content_hash, event.position)
        if queue is None:
            counted(event)
            yield event
            continue
        group.append(event)
        if len(group) >= GROUP_EVENTS:
            yield from _hand_over(group, commit_group, counted)
    if group:
        yield from _hand_over(group, commit_group, counted)
    if reader.broken is not None:
        summary.broken_input = reader.broken


def _nothing() -> None:
    return None


def _hand_over(
    group: list[Incoming], commit: Callable[[], None], counted: Callable[[Incoming], None]
) -> Iterator[Incoming]:
    """Commit the group, then hand its events over one by one (DELIVERY §4): an event sent
    while its row is only in an open transaction is lost with it when a commit fails (a full
    disk), and the next run sends it again. A commit that fails raises here, before any of
    the group is handed over (none of it is stored), and stops the run."""
    try:
        commit()
    except BaseException:
        group.clear()
        raise
    while group:
        event = group.pop(0)
        counted(event)
        yield event


def _admit(queue: DeliveryQueue, event: Incoming, retry_rejected: bool) -> Admitted:
    """Store `event` (staged: its group is committed before any of it is handed over)."""
    (admitted,) = queue.admit(
        [Arrival(event.key, event.content_hash, event.line)], retry_rejected=retry_rejected
    )
    return admitted


def _first_version(
    event: Incoming, earlier: tuple[bool, int] | None, taken: dict[str, tuple[str, int]]
) -> Incoming:
    """`event`, or its `repeated` self when another version of its key was read before it in
    this input (`earlier`, what `FirstSeen.get` says of it) or is still queued."""
    if earlier is None and event.key in taken:
        queued_hash, queued_position = taken[event.key]
        earlier = (queued_hash == event.content_hash, queued_position)
    if earlier is None or earlier[0]:
        return event
    return repeated(event, earlier[1])
