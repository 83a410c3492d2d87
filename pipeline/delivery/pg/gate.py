"""`usercom send` on a PostgreSQL queue (DELIVERY §7): the run delivers an event only while it
holds the lease of its user's lane (and, for a group event, its company's), like any
instance. A lane another instance holds keeps its events: they are left to it, and the run
says so. When the run takes a lane, that lane's older unfinished events go first (§2)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from returns.result import Success

from pipeline.core.config import Config
from pipeline.delivery.incoming import Incoming, stored
from pipeline.delivery.lifecycle import FINISHED, UNFINISHED, Status
from pipeline.delivery.pg.lanes import lanes_of
from pipeline.delivery.pg.ledger import PgLedger
from pipeline.delivery.queue import Queued

__all__ = ["SETTLE_S", "LaneGate"]

SETTLE_S = 300.0  # the longest a send waits for the events it left to another instance


class LaneGate:
    """Filters a run's events to those of lanes it holds; `left` keeps the others."""

    def __init__(self, queue: PgLedger, cfg: Config) -> None:
        self._queue = queue
        self._cfg = cfg
        self._mine: set[str] = set()
        self._companies: set[str] = set()
        self._blocked: set[str] = set()  # held by another, or waiting for its company
        self._yielded: set[str] = set()
        self._waiting: list[Queued] = []  # a lane just taken: its events stored earlier
        self.left: list[Incoming] = []

    @property
    def queue(self) -> PgLedger:
        return self._queue

    def settle(self, poll: float = 0.25, longest: float = SETTLE_S) -> dict[str, Status]:
        """Wait until the events left to others are finished (§7: a send exits when the
        events it read are finished), until no live instance holds their lanes any more, or
        `longest` seconds (a holder retrying a failing event may take hours); their
        statuses then."""
        deadline = time.monotonic() + longest
        keys = [item.key for item in self.left]
        lanes = sorted({lanes_of(item.key, item.line)[0] for item in self.left})
        while True:
            found = self._queue.states(keys)
            statuses = {key: found[key][0] if key in found else "pending" for key in keys}
            waiting = [key for key, status in statuses.items() if status in UNFINISHED]
            if not waiting or not self._queue.held_by_others(lanes):
                return statuses
            if time.monotonic() > deadline:
                return statuses
            try:
                time.sleep(poll)
            except KeyboardInterrupt:
                return statuses

    def left_words(self, statuses: dict[str, Status]) -> str:
        count = len(self.left)
        done = sum(1 for status in statuses.values() if status in FINISHED)
        which = "event" if count == 1 else "events"
        words = (
            f"{count} {which} of users whose lane another instance held (a `usercom serve` or "
            f"`send` on this database) went to it: {done} finished there"
        )
        if done < count:
            words += f", {count - done} still queued (in order; a re-run or the service takes them)"
        return words

    def __call__(self, events: Iterable[Incoming]) -> Iterator[Incoming]:
        for item in events:
            if item.key in self._yielded:
                continue  # went first already, as an older event of its lane
            if not isinstance(item.job, Success):
                yield item  # never sent: filed rejected without a request
                continue
            lane, company = lanes_of(item.key, item.line)
            if lane in self._blocked or not self._hold(lane, item, company):
                self._blocked.add(lane)  # its later events wait behind it: order is kept
                self.left.append(item)
                continue
            yield from self._older(lane, item)
            self._yielded.add(item.key)
            yield item

    def _hold(self, lane: str, item: Incoming, company: str | None) -> bool:
        if lane not in self._mine:
            waiting = self._queue.hold_lane(lane)
            if waiting is None:
                return False
            self._mine.add(lane)
            self._waiting = [q for q in waiting if q.row.position < item.position]
        if company is not None and company not in self._companies:
            if not self._queue.hold_company(company):
                return False
            self._companies.add(company)
        return True

    def _older(self, lane: str, item: Incoming) -> Iterator[Incoming]:
        """The lane's unfinished events stored before `item`, not handed out yet."""
        waiting, self._waiting = self._waiting, []
        for queued in waiting:
            row = queued.row
            if row.key in self._yielded or row.key == item.key:
                continue
            self._yielded.add(row.key)
            yield stored(self._cfg, row.key, row.content_hash, row.position, row.line, row.error)
