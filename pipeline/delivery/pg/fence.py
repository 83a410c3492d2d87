"""What a writer knows of its own leases, by its own clock (DELIVERY §7): a lease is valid on
the server until `until`, set to the server's `now() + ttl` by a claim or a renewal; this
writer counts that `ttl` from the moment *before* it sent the statement (so never later than
the server did), and stops trusting it `margin` seconds early, for clocks that drift and for a
request that leaves just before the end.

A renewal that came late (a stalled thread, a slow database) therefore shows here as a lease
that lapsed: the delivery of that lane starts no request until a renewal or a claim succeeds
again, while another instance may take the lane over on the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Final

from pipeline.delivery.pg.text import storable as as_stored

__all__ = ["MARGIN_SHARE", "LeaseBook", "as_stored"]


# The share of the TTL a lease is distrusted early. Renewals come every third of the TTL, so
# one renewal missed (a database hiccup) never interrupts delivery; two missed in a row do.
MARGIN_SHARE: Final = 0.25


class LeaseBook:
    """Lane -> when this writer stops trusting its lease (its own monotonic clock)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._margin = ttl * MARGIN_SHARE
        self.clock = clock
        self._trusted_until: dict[str, float] = {}
        self._guard = threading.Lock()  # the renewer thread writes while the loop reads

    def granted(self, lanes: Iterable[str], asked_at: float) -> None:
        """These lanes' leases were set to last `ttl` by a statement sent at `asked_at`."""
        until = asked_at + self._ttl - self._margin
        with self._guard:
            for lane in lanes:
                self._trusted_until[lane] = until

    def dropped(self, lanes: Iterable[str]) -> None:
        """Given back (released): never trusted again until granted again."""
        with self._guard:
            for lane in lanes:
                self._trusted_until.pop(lane, None)

    def holds(self, lane: str) -> bool:
        """Whether this writer may still start a request for `lane`."""
        with self._guard:
            until = self._trusted_until.get(as_stored(lane))
        return until is not None and self.clock() < until

    def licensed(self, lane: str, company: str | None) -> bool:
        """An event's lane, and its company's lane for a group event, are both held."""
        return self.holds(lane) and (company is None or self.holds(f"company:{company}"))
