"""The one composition of the pure stages: normalize -> config -> flow, as a `Job`.

Every caller goes through here: the drop-in API and `plan` with the reference's write
strategy, the delivery engine and the command with delivery's. The Job carries what callers
need besides the flow: the event type, its lane (whose order it keeps) and its company.

>>> item = {"message": {"type": "track", "userId": 7, "event": "Paid"},
...         "destination": {"Config": {"apiKey": "k", "appSubdomain": "acme"}}}
>>> job = prepare(item).unwrap()
>>> job.event.type, job.lane, job.company
('track', 'user:7', None)
"""

from __future__ import annotations

from dataclasses import dataclass

from returns.result import Failure, Result, Success

from pipeline.core import paths
from pipeline.core.config import Config, parse_config
from pipeline.core.errors import PipelineError
from pipeline.core.flows import REFERENCE, Strategy, event_flow
from pipeline.core.normalize import Event, normalize
from pipeline.core.steps import Step
from pipeline.core.types import OBJECT_TYPES, as_text


@dataclass(frozen=True, slots=True)
class Job:
    """An event ready to run: its config, the event, the first step of its flow, and
    the lane (`user:<id>`; None when the event names no user) and company it touches."""

    config: Config
    event: Event
    step: Step
    lane: str | None
    company: str | None


def lane_of(event: Event) -> str | None:
    """Events of one user (the userId list, else email) keep their order."""
    who = paths.read(event.message, paths.USER_ID)
    who = who if who is not None else paths.read(event.message, paths.EMAIL)
    return f"user:{as_text(who)}" if who is not None else None


def company_of(event: Event) -> str | None:
    """The company a group event writes: one writer per company at a time."""
    if event.type != "group":
        return None
    group_id = paths.read(event.message, paths.GROUP_ID)
    return as_text(group_id) if group_id is not None else None


def job_of(cfg: Config, event: Event, strategy: Strategy = REFERENCE) -> Result[Job, PipelineError]:
    flow = event_flow(cfg, event, strategy)
    if not isinstance(flow, Success):
        return Failure(flow.failure())
    return Success(Job(cfg, event, flow.unwrap(), lane_of(event), company_of(event)))


def prepare_message(
    cfg: Config, message: object, strategy: Strategy = REFERENCE
) -> Result[Job, PipelineError]:
    """A raw message under an already parsed config (delivery parses its config once)."""
    return normalize(message).bind(lambda event: job_of(cfg, event, strategy))


def _part(item: object, key: str) -> object:
    return item.get(key) if isinstance(item, OBJECT_TYPES) else None


def prepare(item: object, strategy: Strategy = REFERENCE) -> Result[Job, PipelineError]:
    """A processor input item -> the Job, or the first failure (SPEC §3 order)."""
    # Plain steps, not nested binds: this runs once per event of every drop-in call.
    event = normalize(_part(item, "message"))
    if not isinstance(event, Success):
        return Failure(event.failure())
    cfg = parse_config(_part(_part(item, "destination"), "Config"))
    if not isinstance(cfg, Success):
        return Failure(cfg.failure())
    return job_of(cfg.unwrap(), event.unwrap(), strategy)
