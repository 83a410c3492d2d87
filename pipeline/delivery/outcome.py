"""What happened to each event (DELIVERY §2), and the run's totals."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.delivery.lifecycle import FINISHED, UNFINISHED, Reported

__all__ = [
    "FINISHED",
    "MIN_RATE_EVENTS",
    "MIN_RATE_SECONDS",
    "UNFINISHED",
    "Outcome",
    "Status",
    "Summary",
]

# A rate from fewer events or a shorter time says more about start-up than about speed.
MIN_RATE_EVENTS = 20
MIN_RATE_SECONDS = 1.0

# An outcome reports a ledger status, or a dry run's plan (never filed).
Status = Reported


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event's result. `requests` lists every call made for it, as `METHOD URL -> status`."""

    key: str
    status: Status
    attempts: int = 0
    requests: tuple[str, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()
    position: int = 0

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "status": self.status,
            "position": self.position,
            "attempts": self.attempts,
            "requests": list(self.requests),
            "error": self.error,
            "warnings": list(self.warnings),
        }
        return data

    def _repr_html_(self) -> str:
        """How a notebook shows it (requests are logged with the key masked, never in full)."""
        rows = "".join(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"
            for name, value in self.as_json().items()
        )
        return f"<table><caption>Outcome</caption>{rows}</table>"


@dataclass(slots=True)
class Summary:
    """Running totals of a delivery run (owned by one run, never shared)."""

    counts: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # finished earlier, by status
    changed: int = 0  # finished earlier, but edited since: attempted again
    api_calls: int = 0
    calls: Counter[str] = field(default_factory=Counter)  # "endpoint status" -> count
    errors: Counter[str] = field(default_factory=Counter)
    errors_by_status: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, error)
    warnings: int = 0
    events: int = 0  # events with an outcome in this run
    sent: int = 0  # of those, events this run made requests for
    seconds: float = 0.0
    fault: str | None = None
    broken_input: str | None = None

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        self.events += 1
        self.warnings += len(outcome.warnings)
        if outcome.attempts:
            self.sent += 1
        if outcome.error is not None and outcome.status in ("rejected", "failed"):
            self.errors[outcome.error] += 1
            self.errors_by_status[(outcome.status, outcome.error)] += 1

    def top_errors(self, limit: int) -> list[tuple[str, str, int]]:
        """The most common errors as (status, error, count), every `failed` one before any
        `rejected` one: a failed error is what stands between a re-run and exit 0, and a tie
        of rejected errors must not hide it."""
        ranked = sorted(
            self.errors_by_status.items(),
            key=lambda item: (item[0][0] != "failed", -item[1], item[0][1]),
        )
        return [(status, error, count) for (status, error), count in ranked[:limit]]

    @property
    def rate(self) -> float | None:
        """Events sent per second, or None from a sample too small to mean anything."""
        if self.sent < MIN_RATE_EVENTS or self.seconds < MIN_RATE_SECONDS:
            return None
        return self.sent / self.seconds

    @property
    def calls_per_event(self) -> float:
        return self.api_calls / self.sent if self.sent else 0.0

    @property
    def unfinished(self) -> int:
        return sum(self.counts[s] for s in UNFINISHED)

    @property
    def rejected(self) -> int:
        return self.counts["rejected"] + self.skipped["rejected"]

    @property
    def all_delivered(self) -> bool:
        return not self.rejected and not self.unfinished
