"""The delivery mode's own request strategy; pure.

The drop-in API keeps the reference's sequence (lookup, then PUT or POST). When delivering,
an identify looked up by userId needs no lookup: `POST /users/update_or_create/` matches on
custom_id and writes in one call.
"""

from __future__ import annotations

from returns.result import Result

from pipeline.core.calls import Request, clean_body
from pipeline.core.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.flows import event_flow, identify_payload
from pipeline.core.lookup import resolve_lookup
from pipeline.core.normalize import Event
from pipeline.core.steps import Final, Step

UPSERT_PATH = ("users", "update_or_create")


def _upsert_or_flow(cfg: Config, event: Event) -> Result[Step, PipelineError]:
    def choose(by: str) -> Result[Step, PipelineError]:
        if by != "userId":
            return event_flow(cfg, event)
        return identify_payload(cfg, event.message).map(
            lambda p: Final(Request("POST", UPSERT_PATH, body=clean_body(p.fields)), p.warnings)
        )

    return resolve_lookup(event.message).bind(lambda lookup: choose(lookup.by))


def delivery_flow(cfg: Config, event: Event) -> Result[Step, PipelineError]:
    if event.type == "identify":
        return _upsert_or_flow(cfg, event)
    return event_flow(cfg, event)
