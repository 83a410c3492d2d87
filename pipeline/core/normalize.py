"""Untrusted message -> `Event`: the only stage that looks at raw shapes (SPEC §3).

>>> normalize({"type": "Identify", "userId": "u1"}).unwrap().type
'identify'
>>> normalize({"type": "screen"}).failure().message
'Event type screen is not supported'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from returns.result import Failure, Result, Success

from pipeline.core import errors, messages
from pipeline.core.errors import PipelineError
from pipeline.core.types import EMPTY, OBJECT_TYPES, JSONObject, freeze_object

EventType = Literal["identify", "track", "page", "group"]
SUPPORTED: tuple[EventType, ...] = ("identify", "track", "page", "group")


@dataclass(frozen=True, slots=True)
class Event:
    """A supported RudderStack message, frozen; `message` keeps every field as sent."""

    type: EventType
    message: JSONObject


def normalize(raw: object) -> Result[Event, PipelineError]:
    try:
        message = freeze_object(raw) if isinstance(raw, OBJECT_TYPES) else EMPTY
    except RecursionError:
        return Failure(errors.instrumentation(messages.EVENT_TOO_DEEP))
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        return Failure(errors.instrumentation(messages.EVENT_TYPE_REQUIRED))
    lowered = kind.lower()
    if lowered not in SUPPORTED:
        return Failure(errors.instrumentation(messages.type_not_supported(lowered)))
    return Success(Event(lowered, message))
