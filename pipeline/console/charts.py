"""The overview's pictures (DELIVERY §8): per app, delivered / failed / 429 per minute over
the last hours, and the queue depth, as inline SVG drawn on the server.

`Series` keeps per-minute counts of one service process (sampled from its metrics, so a
restart starts them again); `chart` turns them into the numbers an SVG template draws.
Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

MINUTES: Final = 180  # three hours
WIDTH: Final = 360
HEIGHT: Final = 80
KINDS: Final = ("delivered", "failed", "throttled")


@dataclass(slots=True)
class Minute:
    start: float  # the minute's first second (epoch)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    queued: int = 0


@dataclass(slots=True)
class Series:
    """One app's last `MINUTES` minutes, from samples of its cumulative counters."""

    minutes: deque[Minute] = field(default_factory=lambda: deque(maxlen=MINUTES))
    _last: dict[str, int] | None = None

    def sample(self, now: float, totals: Mapping[str, int], queued: int) -> None:
        """Add what the counters grew by since the last sample to the current minute."""
        start = now - now % 60
        if not self.minutes or self.minutes[-1].start < start:
            self.minutes.append(Minute(start))
        current = self.minutes[-1]
        last = self._last if self._last is not None else dict(totals)
        for kind in KINDS:
            current.counts[kind] += max(0, totals.get(kind, 0) - last.get(kind, 0))
        current.queued = queued
        self._last = dict(totals)

    def last_hour(self, kind: str, now: float) -> int:
        return sum(m.counts[kind] for m in self.minutes if m.start > now - 3600)


@dataclass(frozen=True, slots=True)
class Line:
    kind: str
    points: str  # SVG polyline points
    total: int


@dataclass(frozen=True, slots=True)
class Chart:
    lines: tuple[Line, ...]
    queue: str  # SVG polyline points of the queue depth
    peak: int  # the per-minute scale's top
    queue_peak: int
    minutes: int
    width: int = WIDTH
    height: int = HEIGHT


def _points(values: Sequence[int], top: int, minutes: int) -> str:
    """Polyline points of one value per minute, the last minute at the right edge.

    >>> _points([0, 5, 10], 10, 3)
    '0.0,80.0 180.0,40.0 360.0,0.0'
    """
    step = WIDTH / max(1, minutes - 1)
    offset = minutes - len(values)
    return " ".join(
        f"{(offset + i) * step:.1f},{HEIGHT - HEIGHT * value / max(1, top):.1f}"
        for i, value in enumerate(values)
    )


def chart(series: Series, now: float) -> Chart:
    """The chart of the minutes up to `now` (empty minutes count 0)."""
    start = now - now % 60
    by_start = {m.start: m for m in series.minutes}
    span = [start - 60 * back for back in range(MINUTES - 1, -1, -1)]
    first = min(by_start, default=start)
    span = [when for when in span if when >= first]
    rows = [by_start.get(when, Minute(when)) for when in span]
    peak = max((m.counts[kind] for m in rows for kind in KINDS), default=0)
    queue_peak = max((m.queued for m in rows), default=0)
    lines = tuple(
        Line(
            kind,
            _points([m.counts[kind] for m in rows], peak, MINUTES),
            sum(m.counts[kind] for m in rows),
        )
        for kind in KINDS
    )
    return Chart(
        lines, _points([m.queued for m in rows], queue_peak, MINUTES), peak, queue_peak, len(rows)
    )
