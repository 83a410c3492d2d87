"""The overview's pictures (DELIVERY §8): per app, delivered / failed / 429 per minute over
the last hours, and the queue depth, as inline SVG drawn on the server.

`Series` keeps per-minute counts of one service process (sampled from its metrics, so a
restart starts them again); `chart` turns them into the numbers an SVG template draws.
Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
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


RATE_WINDOW_S: Final = 60.0


@dataclass(slots=True)
class Series:
    """One app's last `MINUTES` minutes, from samples of its cumulative counters (and of its
    requests to User.com, for the current rate)."""

    minutes: deque[Minute] = field(default_factory=lambda: deque(maxlen=MINUTES))
    _last: dict[str, int] | None = None
    _requests: deque[tuple[float, int]] = field(default_factory=deque)

    def rate(self) -> float | None:
        """Requests per second over the last minute of samples (None before two samples).

        >>> series = Series()
        >>> series.sample(0.0, {"requests": 10}, 0); series.sample(30.0, {"requests": 40}, 0)
        >>> series.rate()
        1.0
        """
        if len(self._requests) < 2:
            return None
        (first, before), (last, after) = self._requests[0], self._requests[-1]
        return (after - before) / (last - first) if last > first else None

    def sample(self, now: float, totals: Mapping[str, int], queued: int) -> None:
        """Add what the counters grew by since the last sample to the current minute."""
        self._requests.append((now, totals.get("requests", 0)))
        while len(self._requests) > 2 and self._requests[1][0] <= now - RATE_WINDOW_S:
            self._requests.popleft()
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
class Bar:
    """One rectangle of a chart (SVG user units; y grows downwards)."""

    kind: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]  # per minute: delivered, then failed, then 429 stacked on it
    queue: tuple[Bar, ...]  # per minute: the queue depth
    totals: tuple[tuple[str, int], ...]
    peak: int  # the per-minute scale's top
    queue_peak: int
    minutes: int
    width: int = WIDTH
    height: int = HEIGHT


def _stacked(minute: Minute, x: float, top: int) -> list[Bar]:
    """A minute's bar: its delivered, failed and 429 counts stacked from the bottom.

    >>> [(b.kind, b.y, b.height) for b in _stacked(Minute(0, {"delivered": 3, "failed": 1, "throttled": 0}), 0, 4)]
    [('delivered', 20.0, 60.0), ('failed', 0.0, 20.0)]
    """  # noqa: E501
    bars: list[Bar] = []
    base = float(HEIGHT)
    for kind in KINDS:
        height = HEIGHT * minute.counts[kind] / max(1, top)
        if height > 0:
            base -= height
            bars.append(Bar(kind, x, base, WIDTH / MINUTES, height))
    return bars


def chart(series: Series, now: float) -> Chart:
    """The chart of the last `MINUTES` minutes up to `now` (minutes without a sample: none)."""
    start = now - now % 60
    by_start = {m.start: m for m in series.minutes}
    span = [start - 60 * back for back in range(MINUTES - 1, -1, -1)]
    rows = [(index, by_start[when]) for index, when in enumerate(span) if when in by_start]
    peak = max((sum(m.counts.values()) for _, m in rows), default=0)
    queue_peak = max((m.queued for _, m in rows), default=0)
    step = WIDTH / MINUTES
    bars = tuple(bar for index, m in rows for bar in _stacked(m, index * step, peak))
    queue = tuple(
        Bar("queued", index * step, HEIGHT - h, step, h)
        for index, m in rows
        if (h := HEIGHT * m.queued / max(1, queue_peak)) > 0
    )
    totals = tuple((kind, sum(m.counts[kind] for _, m in rows)) for kind in KINDS)
    return Chart(bars, queue, totals, peak, queue_peak, len(rows))
