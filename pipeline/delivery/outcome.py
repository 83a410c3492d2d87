"""What happened to each event (DELIVERY §2), and the run's totals."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pipeline.core.answers import Answer, Reply
from pipeline.core.calls import Request
from pipeline.core.config import API_PATH
from pipeline.core.endpoints import CATALOGUE, SUBJECT
from pipeline.delivery.lifecycle import FINISHED, UNFINISHED, Reported

__all__ = [
    "FINISHED",
    "MIN_RATE_EVENTS",
    "MIN_RATE_SECONDS",
    "UNFINISHED",
    "Exchange",
    "Logged",
    "Outcome",
    "Status",
    "Summary",
]

# A rate from fewer events or a shorter time says more about start-up than about speed.
MIN_RATE_EVENTS = 20
MIN_RATE_SECONDS = 1.0

# An outcome reports a ledger status, or a dry run's plan (never filed).
Status = Reported


# The endpoint of a stored request whose text names none the catalogue knows.
UNKNOWN_ENDPOINT = ""
# The endpoint the probe's read is counted under (it is a `user_by_id` on the wire).
PROBE = "probe"


def answered(answer: Answer) -> str:
    """An answer as requests are logged: its status, or why there was none."""
    return str(answer.status) if isinstance(answer, Reply) else answer.reason


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request made and what came back (DELIVERY §2): the catalogue's endpoint name (or
    "probe"), the method, the real URL (never the sandbox's) and the answer: a status, or
    "timeout" / "connection". Its text, `METHOD URL -> answer`, is how it is stored in the
    ledger and written to `--out`, as it always was.

    >>> text = "GET https://acme.user.com/api/public/users-by-id/u1/ -> 404"
    >>> read = Exchange.read(text)
    >>> read.endpoint, read.method, read.answer, str(read) == text
    ('user_by_id', 'GET', '404', True)
    """

    endpoint: str
    method: str
    url: str
    answer: str

    @classmethod
    def of(cls, request: Request, answer: Answer, base_url: str, endpoint: str = "") -> Exchange:
        url = request.url(base_url)
        return cls(endpoint or request.name, request.method, url, answered(answer))

    @classmethod
    def read(cls, text: str) -> Exchange:
        """A stored request back as a value; text that is not `METHOD URL -> answer` (from a
        hand-edited ledger) keeps its words as the URL, with "?" for method and answer."""
        head, arrow, answer = text.rpartition(" -> ")
        if not arrow:
            return cls(UNKNOWN_ENDPOINT, "?", text, "?")
        method, _, url = head.partition(" ")
        return cls(endpoint_at(method, url), method, url, answer)

    def __str__(self) -> str:
        return f"{self.method} {self.url} -> {self.answer}"


def endpoint_at(method: str, url: str) -> str:
    """The catalogue's name for a request read back from its method and URL ("" if none).

    >>> endpoint_at("GET", "https://acme.user.com/api/public/users/search/?email=a%40b.io")
    'user_by_email'
    >>> endpoint_at("POST", "https://acme.user.com/api/public/users-by-id/u%2F1/events/")
    'user_event_by_id'
    """
    parts = urlsplit(url)
    path = parts.path
    if path.startswith(API_PATH + "/"):
        path = path[len(API_PATH) :]
    segments = tuple(path.strip("/").split("/"))
    names = tuple(name for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    for endpoint in CATALOGUE.values():
        query = () if endpoint.query is None else (endpoint.query,)
        if endpoint.method != method or names != query or len(segments) != len(endpoint.path):
            continue
        if all(
            (part == SUBJECT and bool(seg)) or part == seg
            for part, seg in zip(endpoint.path, segments, strict=True)
        ):
            return endpoint.name
    return UNKNOWN_ENDPOINT


# A request as an outcome lists it: an exchange made, or (a dry run's plan) a step planned.
Logged = Exchange | str


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event's result. `requests` lists every call made for it, in order (for a dry run,
    the steps planned, as text)."""

    key: str
    status: Status
    attempts: int = 0
    requests: tuple[Logged, ...] = ()
    error: str | None = None
    warnings: tuple[str, ...] = ()
    position: int = 0

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "status": self.status,
            "position": self.position,
            "attempts": self.attempts,
            "requests": [str(request) for request in self.requests],
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
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (endpoint, answer)
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
