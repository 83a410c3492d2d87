"""Which queued events a delivery round takes (DELIVERY §2 per-user order and `held`, §6
backoff), as one rule for the service and the tests that model it. Pure: no I/O, no clock.

A look through the queue goes in position order. An event of a user (lane) or company a
running round holds waits, and so do its user's later events (their order is kept); a
failed event not due yet is not attempted and holds its user's later events (filed `held`,
naming it); everything else is taken, and its company is busy from then on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.delivery.incoming import Incoming

__all__ = ["Held", "Picking", "Placed"]


@dataclass(frozen=True, slots=True)
class Held:
    """Not attempted: `behind` is the key of the earlier event of its user that waits."""

    behind: str

    @property
    def reason(self) -> str:
        return f"held: an earlier event of this user ({self.behind}) did not finish"


Placed = Literal["take", "busy", "blocks"] | Held


@dataclass(slots=True)
class Picking:
    """One look through the queue: the lanes and companies running rounds hold, and what this
    look decided so far."""

    busy_lanes: set[str] = field(default_factory=set)
    busy_companies: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)  # lanes left to a running round
    blockers: dict[str, str] = field(default_factory=dict)  # lane -> its failed, not-due key

    def place(self, item: Incoming) -> Placed:
        """Where the next event in position order goes: `take` (attempt it in this round),
        `busy` (a running round holds its user or company: it waits, and its user's later
        events with it), `blocks` (failed, not due: it holds its user), or `Held`."""
        lane, company = item.lane, item.company
        if lane in self.skipped or lane in self.busy_lanes or company in self.busy_companies:
            self.skipped.add(lane)
            return "busy"
        if item.deferred is not None:
            self.blockers.setdefault(lane, item.key)
            return "blocks"
        if lane in self.blockers:
            return Held(self.blockers[lane])
        if company is not None:
            self.busy_companies.add(company)
        return "take"
