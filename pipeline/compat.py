"""rudder-transformer's envelopes (its processor and router input and response items) around
the flows and the runner, so that this package drops in where the transformer ran.

No mapping logic lives here: `prepare` (pipeline.core.compose) is the pure pipeline, the
runner does the calls, and these functions only shape what goes in and comes out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import httpx
from returns.result import Failure, Result, Success

from pipeline.core.calls import headers
from pipeline.core.compose import prepare
from pipeline.core.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.steps import Final
from pipeline.core.types import OBJECT_TYPES, thaw
from pipeline.runner import AsyncVia, Target, Via, arun_flow, run_flow
from pipeline.shared_client import SHARED

log = logging.getLogger("pipeline")

Feature = Literal["processor", "router"]


def rest_request(cfg: Config, final: Final) -> dict[str, Any]:
    """The REST request envelope of the final request (SPEC §11)."""
    request = final.request
    return {
        "version": "1",
        "type": "REST",
        "method": request.method,
        "endpoint": request.url(cfg.base_url),
        "headers": headers(cfg.api_key),
        "params": {},
        "body": {
            "JSON": thaw(request.body) if request.body is not None else {},
            "JSON_ARRAY": {},
            "XML": {},
            "FORM": {},
        },
        "files": {},
        "userId": "",
    }


def stat_tags(error: PipelineError, feature: Feature) -> dict[str, str]:
    return {
        **error.stat_tags(),
        "destType": "USER",
        "module": "destination",
        "implementation": "native",
        "feature": feature,
    }


def _log_warnings(final: Final) -> None:
    for warning in final.warnings:
        log.warning("usercom: %s", warning)


def processor_item(
    item: object, outcome: Result[tuple[Config, Final], PipelineError]
) -> dict[str, Any]:
    match outcome:
        case Success((cfg, final)):
            _log_warnings(final)
            response: dict[str, Any] = {"output": rest_request(cfg, final), "statusCode": 200}
        case Failure(error):
            response = {
                "error": error.message,
                "statusCode": error.status,
                "statTags": stat_tags(error, "processor"),
            }
    if isinstance(item, OBJECT_TYPES) and "metadata" in item:
        response["metadata"] = item["metadata"]
    return response


def _router_item(
    item: object, outcome: Result[tuple[Config, Final], PipelineError]
) -> dict[str, Any]:
    response: dict[str, Any] = {}
    if isinstance(item, OBJECT_TYPES) and "metadata" in item:
        response["metadata"] = [item["metadata"]]
    response["batched"] = False
    match outcome:
        case Success((cfg, final)):
            _log_warnings(final)
            request = rest_request(cfg, final)
            del request["userId"]
            response = {"batchedRequest": request, **response, "statusCode": 200}
        case Failure(error):
            response["statusCode"] = error.status
            response["error"] = error.message
            response["statTags"] = stat_tags(error, "router")
    response["destination"] = item.get("destination") if isinstance(item, OBJECT_TYPES) else None
    return response


# One router batch usually holds many items of one destination: its Target (the parsed base
# URL, the key's encoded forms for blanking echoes) is built once per batch, not per item.
Targets = dict[Config, Target]


def _target(cfg: Config, targets: Targets | None) -> Target:
    if targets is None:
        return Target.of(cfg)
    known = targets.get(cfg)
    if known is None:
        known = targets[cfg] = Target.of(cfg)
    return known


def run_item(
    item: object, via: Via, targets: Targets | None = None
) -> Result[tuple[Config, Final], PipelineError]:
    """Prepare one item and drive its flow through the client or transport."""
    prepared = prepare(item)
    match prepared:
        case Success(job):
            final = run_flow(Success(job.step), via, _target(job.config, targets))
            return final.map(lambda f: (job.config, f))
    return Failure(prepared.failure())


async def arun_item(
    item: object, via: AsyncVia, targets: Targets | None = None
) -> Result[tuple[Config, Final], PipelineError]:
    prepared = prepare(item)
    match prepared:
        case Success(job):
            final = await arun_flow(Success(job.step), via, _target(job.config, targets))
            return final.map(lambda f: (job.config, f))
    return Failure(prepared.failure())


def _via(transport: httpx.BaseTransport | None) -> Via:
    """The given transport as it is (a test's MockTransport), else the shared HTTPS client."""
    return transport if transport is not None else SHARED.sync()


def _avia(transport: httpx.AsyncBaseTransport | None) -> AsyncVia:
    return transport if transport is not None else SHARED.for_loop()


def process(
    item: Mapping[str, Any], *, transport: httpx.BaseTransport | None = None
) -> dict[str, Any]:
    """One processor input item -> one processor response item (lookups already done)."""
    return processor_item(item, run_item(item, _via(transport)))


def process_router(
    items: Iterable[Mapping[str, Any]], *, transport: httpx.BaseTransport | None = None
) -> list[dict[str, Any]]:
    """Router input items -> one router response item each, in input order."""
    batch = list(items)
    if not batch:
        return []
    via, targets = _via(transport), Targets()
    return [_router_item(item, run_item(item, via, targets)) for item in batch]


async def aprocess(
    item: Mapping[str, Any], *, transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, Any]:
    return processor_item(item, await arun_item(item, _avia(transport)))


async def aprocess_router(
    items: Iterable[Mapping[str, Any]], *, transport: httpx.AsyncBaseTransport | None = None
) -> list[dict[str, Any]]:
    batch = list(items)
    if not batch:
        return []
    via, targets = _avia(transport), Targets()
    return [_router_item(item, await arun_item(item, via, targets)) for item in batch]
