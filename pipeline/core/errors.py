"""Every failure of the pipeline is a `PipelineError` value (SPEC §10).

The kinds, each with its constructor, and what each means for the caller::

    instrumentation  the event is wrong (400, dataValidation/instrumentation, no retry)
    configuration    the destination config is wrong (400, dataValidation/configuration)
    not_found        User.com has no such user (400, network/aborted, meta instrumentation)
    auth             User.com refused the key (401 or 403, network/aborted)
    aborted          User.com refused the request or answered nonsense (400, network/aborted)
    throttled        User.com said 429 (429, network/throttled, retry)
    retryable        5xx, timeout, connection error (500 or the 5xx, network/retryable, retry)

The status is derived from the kind; only `auth` (401/403) and `retryable` (a 5xx) carry the
status User.com answered, and the constructor refuses any other.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Kind = Literal[
    "instrumentation", "configuration", "not_found", "auth", "aborted", "throttled", "retryable"
]

_TAGS: Mapping[Kind, tuple[str, str]] = MappingProxyType(
    {
        "instrumentation": ("dataValidation", "instrumentation"),
        "configuration": ("dataValidation", "configuration"),
        "not_found": ("network", "aborted"),
        "auth": ("network", "aborted"),
        "aborted": ("network", "aborted"),
        "throttled": ("network", "throttled"),
        "retryable": ("network", "retryable"),
    }
)


def _valid_answered(kind: Kind, answered: int | None) -> bool:
    if kind == "auth":
        return answered in (401, 403)
    if kind == "retryable":
        return answered is None or 500 <= answered <= 599
    return answered is None


@dataclass(frozen=True, slots=True)
class PipelineError:
    """A failure: the exact message, its SPEC §10 kind, and what User.com answered.

    Build one with the constructor of its kind (`instrumentation(...)`, `auth(...)`, ...).

    >>> err = instrumentation("Event type is required")
    >>> err.status, err.category, err.error_type, err.retryable
    (400, 'dataValidation', 'instrumentation', False)
    >>> retryable("User.com failed (503)", 503).status
    503
    >>> PipelineError("x", "instrumentation", 503)
    Traceback (most recent call last):
    ...
    ValueError: a instrumentation error carries no status of its own (503)
    """

    message: str
    kind: Kind
    answered: int | None = None
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if not _valid_answered(self.kind, self.answered):
            raise ValueError(f"a {self.kind} error carries no status of its own ({self.answered})")

    @property
    def status(self) -> int:
        if self.kind == "throttled":
            return 429
        if self.kind == "retryable":
            return self.answered or 500
        return self.answered or 400

    @property
    def category(self) -> str:
        return _TAGS[self.kind][0]

    @property
    def error_type(self) -> str:
        return _TAGS[self.kind][1]

    @property
    def meta(self) -> str | None:
        """The reference tags its "user not found" errors with meta=instrumentation."""
        return "instrumentation" if self.kind == "not_found" else None

    @property
    def retryable(self) -> bool:
        return self.kind in ("throttled", "retryable")

    def _repr_html_(self) -> str:
        """How a notebook shows it: kind, status and message (keys never reach messages)."""
        text = f"{self.kind} ({self.status}): {self.message}"
        return f"<pre>PipelineError {html.escape(text)}</pre>"

    def stat_tags(self) -> dict[str, str]:
        tags = {"errorCategory": self.category, "errorType": self.error_type}
        if self.meta is not None:
            tags["meta"] = self.meta
        return tags


def instrumentation(message: str) -> PipelineError:
    return PipelineError(message, "instrumentation")


def configuration(message: str) -> PipelineError:
    return PipelineError(message, "configuration")


def not_found(message: str) -> PipelineError:
    return PipelineError(message, "not_found")


def auth(message: str, answered: Literal[401, 403]) -> PipelineError:
    return PipelineError(message, "auth", answered)


def aborted(message: str) -> PipelineError:
    return PipelineError(message, "aborted")


def throttled(message: str, retry_after: float | None = None) -> PipelineError:
    return PipelineError(message, "throttled", None, retry_after)


def retryable(message: str, answered: int | None = None) -> PipelineError:
    return PipelineError(message, "retryable", answered)
