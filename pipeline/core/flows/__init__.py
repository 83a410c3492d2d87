"""The flows of the four event types (SPEC §5-§8), one module each, and the write strategy.

`event_flow` keeps the SPEC §3 order of checks: the event's own required fields, then the
lookup choice (resolved once), then the payload; only then does a flow hold a request. A new
event type is one module here and one case below.

>>> from pipeline.core.config import parse_config
>>> from pipeline.core.normalize import normalize
>>> cfg = parse_config({"apiKey": "k", "appSubdomain": "acme"}).unwrap()
>>> event_flow(cfg, normalize({"type": "identify", "userId": "u1"}).unwrap()).unwrap().request
<Request GET /users-by-id/u1/>
>>> event_flow(cfg, normalize({"type": "identify", "userId": "u1"}).unwrap(), DELIVERY).unwrap()
... # doctest: +NORMALIZE_WHITESPACE
Final(request=<Request POST /users/update_or_create/ {'custom_id': 'u1'}>, warnings=(),
      fallback=None)
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.config import Config
from pipeline.core.flows.common import StepResult, within_url_limit
from pipeline.core.flows.group import check_group, group
from pipeline.core.flows.identify import (
    IdentifyWrite,
    identify,
    lookup_then_write,
    upsert_by_custom_id,
)
from pipeline.core.flows.page import page, page_payload
from pipeline.core.flows.track import (
    TrackWrite,
    check_track,
    lookup_then_record,
    record_by_custom_id,
    track,
)
from pipeline.core.lookup import resolve_lookup
from pipeline.core.normalize import Event


@dataclass(frozen=True, slots=True)
class Strategy:
    """How writes are made: the reference's sequence, or delivery's fewer calls.

    `fit_lengths` cuts values User.com refuses for length, with a warning (DELIVERY §5); the
    drop-in API sends what the reference sends.
    """

    name: str
    identify: IdentifyWrite
    track: TrackWrite
    fit_lengths: bool = False


REFERENCE = Strategy(
    "lookup, then write (as rudder-transformer)", lookup_then_write, lookup_then_record
)
DELIVERY = Strategy(
    "update_or_create and the custom-id event route where the user is named by userId",
    upsert_by_custom_id,
    record_by_custom_id,
    fit_lengths=True,
)


def event_flow(cfg: Config, event: Event, strategy: Strategy = REFERENCE) -> StepResult:
    return _first_step(cfg, event, strategy).bind(within_url_limit)


def _first_step(cfg: Config, event: Event, strategy: Strategy) -> StepResult:
    message = event.message
    match event.type:
        case "identify":
            return resolve_lookup(message).bind(
                lambda lookup: identify(
                    cfg, message, lookup, strategy.identify, strategy.fit_lengths
                )
            )
        case "track":
            return (
                check_track(message)
                .bind(lambda _: resolve_lookup(message))
                .bind(lambda lookup: track(cfg, message, lookup, strategy.track))
            )
        case "page":
            return (
                page_payload(message)
                .bind(lambda _: resolve_lookup(message))
                .bind(lambda lookup: page(message, lookup))
            )
        case "group":
            return check_group(message).bind(lambda _: group(cfg, message))


__all__ = ["DELIVERY", "REFERENCE", "Strategy", "event_flow"]
