"""track (SPEC §6): the event payload, the user lookup, then `POST /events/`."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from returns.result import Failure, Result, Success

from pipeline.core import errors, messages, paths
from pipeline.core.calls import call, clean_body
from pipeline.core.config import Config, EventRule
from pipeline.core.errors import PipelineError
from pipeline.core.flows.common import StepResult, final, lookup_call, missing_id, require
from pipeline.core.lookup import Lookup
from pipeline.core.mapping import TRACK_TIMESTAMP, Payload, apply_table
from pipeline.core.overlay import overlay_fields
from pipeline.core.steps import Call, Final, Step
from pipeline.core.types import JSON, OBJECT_TYPES, JSONObject


def event_rule(cfg: Config, name: JSON) -> EventRule | None:
    """The userEvents rule for this event name: only when exactly one matches (SPEC §6)."""
    matches = [rule for rule in cfg.user_events if rule.rs_event_name == name]
    return matches[0] if len(matches) == 1 else None


def track_payload(cfg: Config, message: JSONObject) -> Result[Payload, PipelineError]:
    name = message.get("event")
    rule = event_rule(cfg, name)
    properties = message.get("properties")
    fields: dict[str, JSON] = {"name": rule.user_event_name if rule else name}
    if properties is not None and isinstance(properties, OBJECT_TYPES):
        fields["data"] = (
            overlay_fields(properties, rule.properties, frozenset()) if rule else properties
        )
    # Plain checks, not a chain of Results: a track is most of the events of any stream.
    if paths.read(message, paths.USER_ID) is None:
        return Failure(errors.instrumentation(messages.MISSING_USER_ID))
    return apply_table((TRACK_TIMESTAMP,), message).map(lambda stamp: stamp.merged(fields))


def _write(payload: Payload, user: JSONObject | None) -> StepResult:
    if user is None:
        return Failure(errors.not_found(messages.TRACK_NOT_FOUND))
    error = missing_id(user, "user")
    if error is not None:
        return Failure(error)
    return Success(final("event", payload.merged({"user_id": user.get("id")})))


def check_track(message: JSONObject) -> Result[JSON, PipelineError]:
    """The event's own required field, checked before the lookup choice (SPEC §3)."""
    return require(message, (("event",),), messages.EVENT_REQUIRED)


TrackWrite = Callable[[Lookup, Payload], Step]


def lookup_then_record(lookup: Lookup, payload: Payload) -> Step:
    """Find the user, then `POST /events/` with its id (the reference's sequence)."""
    return lookup_call(lookup, partial(_write, payload))


def record_by_custom_id(lookup: Lookup, payload: Payload) -> Step:
    """A user named by userId: one `POST /users-by-id/<cid>/events/`, no lookup. Should that
    route be missing (404), fall back to the lookup and `POST /events/`."""
    fallback = lookup_then_record(lookup, payload)
    if lookup.by != "userId" or not isinstance(fallback, Call):
        return fallback
    body = clean_body(payload.fields)
    request = call("user_event_by_id", lookup.value, body)
    return Final(request, payload.warnings, fallback)


def track(cfg: Config, message: JSONObject, lookup: Lookup, write: TrackWrite) -> StepResult:
    return track_payload(cfg, message).map(partial(write, lookup))
