"""Every failure of the pipeline is a `PipelineError` value (SPEC §10).

The kinds, and what each means for the caller::

    instrumentation  the event is wrong (400, dataValidation/instrumentation, no retry)
    configuration    the destination config is wrong (400, dataValidation/configuration)
    not_found        User.com has no such user (400, network/aborted, meta instrumentation)
    auth             User.com refused the key (401/403, network/aborted)
    aborted          User.com refused the request or answered nonsense (400, network/aborted)
    throttled        User.com said 429 (429, network/throttled, retry)
    retryable        5xx, timeout, connection error (500 or the 5xx, network/retryable, retry)
"""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class PipelineError:
    """A failure: the exact message, an HTTP-like status and its SPEC §10 category.

    >>> err = instrumentation("Event type is required")
    >>> err.status, err.category, err.error_type, err.retryable
    (400, 'dataValidation', 'instrumentation', False)
    """

    message: str
    kind: Kind
    status: int = 400
    retry_after: float | None = None

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


def aborted(message: str, status: int = 400) -> PipelineError:
    return PipelineError(message, "aborted", status)


MISSING_USER_ID = 'Missing required value from "userId"'
