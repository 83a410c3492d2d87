"""usercom-pipeline: RudderStack events to User.com, through pure stages and one effect runner.

Drop-in for rudder-transformer's User.com destination (same input items, same response items):
`process`, `process_router`, `aprocess`, `aprocess_router`.
Pure, no network: `plan` (what an event will do), `prepare` (the Job of an item: its flow),
and the stages `normalize`, `parse_config`, `resolve_lookup`, `event_flow`.
Effects: `run_flow` / `arun_flow` drive a flow through an httpx client or transport.
"""

from pipeline.compat import aprocess, aprocess_router, process, process_router
from pipeline.core.answers import Answer, Reply, Unreachable
from pipeline.core.calls import Request
from pipeline.core.compose import Job, prepare
from pipeline.core.config import Config, parse_config
from pipeline.core.errors import PipelineError
from pipeline.core.flows import DELIVERY, REFERENCE, Strategy, event_flow
from pipeline.core.lookup import Lookup, resolve_lookup
from pipeline.core.normalize import Event, normalize
from pipeline.core.plan import Plan, plan
from pipeline.core.steps import Call, Final, Step
from pipeline.core.types import freeze, thaw
from pipeline.delivery.faults import RunFault
from pipeline.delivery.outcome import Outcome
from pipeline.destination import ConfigError, Destination
from pipeline.runner import Target, arun_flow, run_flow

__all__ = [
    "DELIVERY",
    "REFERENCE",
    "Answer",
    "Call",
    "Config",
    "ConfigError",
    "Destination",
    "Event",
    "Final",
    "Job",
    "Lookup",
    "Outcome",
    "PipelineError",
    "Plan",
    "Reply",
    "Request",
    "RunFault",
    "Step",
    "Strategy",
    "Target",
    "Unreachable",
    "aprocess",
    "aprocess_router",
    "arun_flow",
    "event_flow",
    "freeze",
    "normalize",
    "parse_config",
    "plan",
    "prepare",
    "process",
    "process_router",
    "resolve_lookup",
    "run_flow",
    "thaw",
]
