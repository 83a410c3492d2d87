"""A flow is data: `Call`s that say what to do with each answer, ending in a `Final` request.

The effect runner sends a Call's request, hands the answer to `then`, and repeats until it
gets a Final (the request to deliver) or a Failure. Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from returns.result import Result

from pipeline.core.answers import Answer
from pipeline.core.calls import Request
from pipeline.core.errors import PipelineError

# What a Call hopes to get back; lets `plan` invent a representative answer for each branch.
Expect = Literal["user", "user_list", "company", "company_write"]


@dataclass(frozen=True, slots=True)
class Final:
    """The request that completes the event, and the warnings met while building it.

    `fallback` is the flow to follow when User.com answers 404 to this request: a route known
    only from older docs may be missing (DELIVERY §3), which must never mean "no user".
    """

    request: Request
    warnings: tuple[str, ...] = ()
    fallback: Call | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A request whose answer decides the next step."""

    request: Request
    purpose: str
    expect: Expect
    then: Callable[[Answer], Result[Step, PipelineError]] = field(repr=False, compare=False)


Step: TypeAlias = Call | Final
