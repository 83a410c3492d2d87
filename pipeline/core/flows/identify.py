"""identify (SPEC §5): the user payload, then a write chosen by the write strategy.

The drop-in API looks the user up and then PUTs or POSTs (`lookup_then_write`, as the
reference does); delivery writes a user found by userId in one `update_or_create` call
(`upsert_by_custom_id`). Either way the lookup is resolved once, by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from returns.result import Result, Success

from pipeline.core.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.flows.common import StepResult, final, lookup_call, with_id
from pipeline.core.lookup import Lookup
from pipeline.core.mapping import IDENTIFY, IDENTIFY_SOURCE_KEYS, Payload, apply_table
from pipeline.core.overlay import merged_traits, overlay
from pipeline.core.steps import Step
from pipeline.core.types import JSON, JSONObject

IdentifyWrite = Callable[[Lookup, Payload], Step]


def identify_payload(cfg: Config, message: JSONObject) -> Result[Payload, PipelineError]:
    return apply_table(IDENTIFY, message).map(
        lambda p: overlay(p, merged_traits(message), cfg.user_attributes, IDENTIFY_SOURCE_KEYS)
    )


def _write(payload: Payload, user: JSONObject | None) -> StepResult:
    if user is None:
        return Success(final("create_user", payload))
    return with_id(user, "user").map(lambda uid: final("update_user", payload, uid))


def lookup_then_write(lookup: Lookup, payload: Payload) -> Step:
    """Find the user, then update it (PUT) or create it (POST)."""
    return lookup_call(lookup, partial(_write, payload))


def upsert_by_custom_id(lookup: Lookup, payload: Payload) -> Step:
    """A user named by userId is written in one call that matches on custom_id."""
    if lookup.by != "userId":
        return lookup_then_write(lookup, payload)
    return final("upsert_user", payload)


# Values User.com refuses for length (usercom-api.md §3.5, §9): delivery truncates them.
LIMITS: tuple[tuple[str, int], ...] = (
    ("first_name", 40),
    ("last_name", 40),
    ("city", 64),
    ("phone_number", 64),
)


def fit_lengths(payload: Payload) -> Payload:
    """Values over User.com's limits, cut to fit, each with a warning (DELIVERY §5).

    >>> from types import MappingProxyType
    >>> fitted = fit_lengths(Payload(MappingProxyType({"first_name": "A" * 41, "city": "Oslo"})))
    >>> len(fitted.fields["first_name"]), fitted.fields["city"], fitted.warnings
    (40, 'Oslo', ('first_name was 41 characters, over the 40 User.com accepts: truncated',))
    """
    cut: dict[str, JSON] = {}
    warnings: list[str] = []
    for name, limit in LIMITS:
        value = payload.fields.get(name)
        if isinstance(value, str) and len(value) > limit:
            cut[name] = value[:limit]
            warnings.append(
                f"{name} was {len(value)} characters, over the {limit} User.com accepts: truncated"
            )
    if not cut:
        return payload
    return replace(payload.merged(cut), warnings=(*payload.warnings, *warnings))


def identify(
    cfg: Config, message: JSONObject, lookup: Lookup, write: IdentifyWrite, fit: bool = False
) -> StepResult:
    payload = identify_payload(cfg, message)
    return (payload.map(fit_lengths) if fit else payload).map(partial(write, lookup))
