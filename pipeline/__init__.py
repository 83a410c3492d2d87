"""usercom-pipeline: RudderStack events to User.com, through pure stages and one effect runner.

Drop-in (SPEC §11): `process`, `process_router`, `aprocess`, `aprocess_router`.
Pure, no network: `plan` (what an event will do), `prepare` (the flow of an item), and the
stages `normalize`, `parse_config`, `resolve_lookup`, `event_flow`.
Effects: `run_flow` / `arun_flow` drive a flow through an httpx client.
"""

from pipeline.answers import Answer, Reply, Unreachable
from pipeline.compat import Job, aprocess, aprocess_router, prepare, process, process_router
from pipeline.config import Config, parse_config
from pipeline.errors import PipelineError
from pipeline.flows import event_flow
from pipeline.lookup import Lookup, resolve_lookup
from pipeline.normalize import Event, normalize
from pipeline.plan import Plan, plan
from pipeline.requests import Request
from pipeline.runner import Target, arun_flow, run_flow
from pipeline.steps import Call, Final, Step
from pipeline.types import freeze, thaw

__all__ = [
    "Answer",
    "Call",
    "Config",
    "Event",
    "Final",
    "Job",
    "Lookup",
    "PipelineError",
    "Plan",
    "Reply",
    "Request",
    "Step",
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
