"""What happened to each event, and the run's totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["delivered", "rejected", "failed", "planned", "skipped"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event's result. `requests` lists every call made for it, as `METHOD URL -> status`."""

    key: str
    status: Status
    attempts: int = 0
    requests: tuple[str, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "status": self.status,
            "attempts": self.attempts,
            "requests": list(self.requests),
        }
        if self.error is not None:
            data["error"] = self.error
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data


@dataclass(slots=True)
class Summary:
    """Running totals of a delivery run (owned by one run, never shared)."""

    counts: dict[str, int] = field(default_factory=dict)
    api_calls: int = 0
    events: int = 0
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        self.events += 1

    @property
    def calls_per_event(self) -> float:
        sent = self.events - self.counts.get("skipped", 0)
        return self.api_calls / sent if sent else 0.0

    @property
    def all_delivered(self) -> bool:
        return not (self.counts.get("rejected") or self.counts.get("failed"))
