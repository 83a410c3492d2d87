"""What every flow shares: required reads, the user lookup Call, and the Final request."""

from __future__ import annotations

from collections.abc import Callable

from returns.result import Failure, Result, Success

from pipeline.core import errors, paths
from pipeline.core.answers import Answer
from pipeline.core.calls import call, clean_body
from pipeline.core.endpoints import EndpointName
from pipeline.core.errors import PipelineError
from pipeline.core.lookup import Lookup
from pipeline.core.mapping import Payload
from pipeline.core.steps import Call, Expect, Final, Step
from pipeline.core.types import JSON, JSONObject, as_text, is_present

StepResult = Result[Step, PipelineError]
Found = Callable[[JSONObject | None], StepResult]


def require(message: JSONObject, source: paths.PathList, error: str) -> Result[JSON, PipelineError]:
    value = paths.read(message, source)
    return Success(value) if value is not None else Failure(errors.instrumentation(error))


def final(name: EndpointName, payload: Payload, subject: str | None = None) -> Final:
    return Final(call(name, subject, clean_body(payload.fields)), payload.warnings)


def with_id(thing: JSONObject, what: str) -> Result[str, PipelineError]:
    ident = thing.get("id")
    if not is_present(ident):
        return Failure(errors.aborted(f"User.com answered a {what} without an id"))
    return Success(as_text(ident))


def lookup_call(lookup: Lookup, found: Found) -> Call:
    """Find the user, then hand what was found (None: nobody) to `found`."""

    def then(answer: Answer) -> StepResult:
        return lookup.classify(answer).bind(found)

    expect: Expect = "user_list" if lookup.by == "phone" else "user"
    return Call(lookup.request, f"find the user by {lookup.by}", expect, then)
