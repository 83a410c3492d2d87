"""`plan(item)`: what an event will do, worked out with no network at all.

Each Call of the flow is fed representative answers (the user or company found, and not
found), so the plan shows every request the event can lead to:

>>> print(plan({"message": {"type": "identify", "userId": "u1", "traits": {"age": 3}},
...             "destination": {"Config": {"apiKey": "k" * 64, "appSubdomain": "acme"}}}))
identify -> https://acme.user.com/api/public
  GET /users-by-id/u1/  (find the user by userId)
    if found: PUT /users/<user.id>/ {'custom_id': 'u1', 'age': 3}
    if not found: POST /users/ {'custom_id': 'u1', 'age': 3}
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from returns.result import Failure, Result, Success

from pipeline.core.answers import Reply
from pipeline.core.calls import Request
from pipeline.core.compose import Job, prepare
from pipeline.core.errors import PipelineError
from pipeline.core.flows import REFERENCE, Strategy
from pipeline.core.steps import Call, Expect, Final, Step
from pipeline.core.types import freeze_object, thaw

_USER = freeze_object(
    {"id": "<user.id>", "user_key": "<user.user_key>", "custom_id": "<user.custom_id>"}
)
_COMPANY = freeze_object({"id": "<company.id>"})

# For each kind of Call: the answers worth showing, with the words that name them.
_BRANCHES: Mapping[Expect, tuple[tuple[str, Reply], ...]] = MappingProxyType(
    {
        "user": (("if found", Reply(200, _USER)), ("if not found", Reply(404))),
        "user_list": (
            ("if one user matches", Reply(200, freeze_object({"results": [dict(_USER)]}))),
            ("if none matches", Reply(404)),
        ),
        "company": (("if found", Reply(200, _COMPANY)), ("if not found", Reply(404))),
        "company_write": (("once written", Reply(200, _COMPANY)),),
    }
)


@dataclass(frozen=True, slots=True)
class Plan:
    """A readable tree of the requests an event leads to; `str()` shows it."""

    event_type: str
    base_url: str
    lines: tuple[str, ...]
    # Every warning a branch of the flow meets, once each: what the outcome's `warnings` holds.
    warnings: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "\n".join((f"{self.event_type} -> {self.base_url}", *self.lines))

    def __repr__(self) -> str:
        return f"<Plan\n{self}\n>"

    def _repr_html_(self) -> str:
        """How a notebook shows it: the same tree, as preformatted text."""
        return f"<pre>{html.escape(str(self))}</pre>"


def _show(request: Request) -> str:
    body = "" if request.body is None else f" {thaw(request.body)}"
    return f"{request.method} {request.readable_path()}{body}"


def _describe(step: Result[Step, PipelineError], depth: int) -> list[str]:
    pad = "  " * depth
    match step:
        case Success(Final() as final):
            notes = [f"{pad}  warning: {w}" for w in final.warnings]
            lines = [f"{pad}{_show(final.request)}", *notes]
            if final.fallback is not None:
                fallback = _describe(Success(final.fallback), depth + 2)
                lines.append(f"{pad}  if that route is missing (404): {fallback[0].strip()}")
                lines.extend(fallback[1:])
            return lines
        case Success(Call() as call):
            lines = [f"{pad}{_show(call.request)}  ({call.purpose})"]
            for words, answer in _BRANCHES[call.expect]:
                outcome = _describe(call.then(answer), depth + 2)
                lines.append(f"{pad}  {words}: {outcome[0].strip()}")
                lines.extend(outcome[1:])
            return lines
        case Failure(error):
            return [f"{pad}error ({error.status}): {error.message}"]
    return []


def _warnings(step: Result[Step, PipelineError]) -> list[str]:
    """The warnings of every Final the flow can reach, with the same answers `_describe` feeds."""
    match step:
        case Success(Final() as final):
            fallback = [] if final.fallback is None else _warnings(Success(final.fallback))
            return [*final.warnings, *fallback]
        case Success(Call() as call):
            return [w for _, answer in _BRANCHES[call.expect] for w in _warnings(call.then(answer))]
    return []


def plan_of(prepared: Result[Job, PipelineError]) -> Plan | PipelineError:
    """The plan of a prepared Job, or the error it fails with before any request."""
    match prepared:
        case Success(Job() as job):
            lines = tuple(_describe(Success(job.step), 1))
            warnings = tuple(dict.fromkeys(_warnings(Success(job.step))))
            return Plan(job.event.type, job.config.base_url, lines, warnings)
    return prepared.failure()


def plan(item: Mapping[str, Any], strategy: Strategy = REFERENCE) -> Plan | PipelineError:
    """The plan of a processor input item, or the error it fails with before any request."""
    return plan_of(prepare(item, strategy))
