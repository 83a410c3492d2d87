"""What every flow shares: required reads, the user lookup Call, and the Final request."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from types import MappingProxyType

from returns.result import Failure, Result, Success

from pipeline.core import errors, paths
from pipeline.core.answers import Answer
from pipeline.core.calls import SUBJECT_ENCODED_MAX, Request, call, clean_body
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


def missing_id(thing: JSONObject, what: str) -> PipelineError | None:
    """The failure of an answered `what` that holds no id, else None."""
    if is_present(thing.get("id")):
        return None
    return errors.aborted(f"User.com answered a {what} without an id")


def with_id(thing: JSONObject, what: str) -> Result[str, PipelineError]:
    error = missing_id(thing, what)
    return Success(as_text(thing.get("id"))) if error is None else Failure(error)


def lookup_call(lookup: Lookup, found: Found) -> Call:
    """Find the user, then hand what was found (None: nobody) to `found`."""

    def then(answer: Answer) -> StepResult:
        return lookup.classify(answer).bind(found)

    expect: Expect = "user_list" if lookup.by == "phone" else "user"
    return Call(lookup.request, f"find the user by {lookup.by}", expect, then)


# Where each endpoint's subject comes from: a field of the event (too long: a bad event), or
# else an id User.com answered (too long: an answer not understood).
_EVENT_SUBJECTS: Mapping[EndpointName, str] = MappingProxyType(
    {
        "user_by_id": "userId",
        "user_event_by_id": "userId",
        "user_by_key": "userKey",
        "user_by_email": "email",
        "user_by_phone": "phone",
        "company_by_id": "groupId",
    }
)
_ANSWERED_SUBJECTS: Mapping[EndpointName, str] = MappingProxyType(
    {"update_user": "user", "update_company": "company", "add_member": "company"}
)


def url_too_long(request: Request) -> PipelineError | None:
    """The failure of a request whose subject would push its URL past httpx's limit."""
    sizes = request.subject_too_long()
    if sizes is None:
        return None
    chars, encoded = sizes
    size = f"{chars} characters" if chars == encoded else f"{chars} characters, {encoded} encoded"
    detail = f"too long to be sent in a URL ({size}; at most {SUBJECT_ENCODED_MAX} encoded)"
    field = _EVENT_SUBJECTS.get(request.name)
    if field is not None:
        return errors.instrumentation(f"{field} is {detail}")
    what = _ANSWERED_SUBJECTS.get(request.name, "record")
    return errors.aborted(f"User.com answered a {what} with an id {detail}")


def within_url_limit(step: Step) -> StepResult:
    """`step`, with every request it leads to refused before it is built if its URL would be
    too long: an error value where httpx would raise."""
    error = url_too_long(step.request)
    if error is not None:
        return Failure(error)
    if isinstance(step, Call):
        return Success(_checked(step))
    if step.fallback is None:
        return Success(step)
    error = url_too_long(step.fallback.request)
    return (
        Failure(error)
        if error is not None
        else Success(replace(step, fallback=_checked(step.fallback)))
    )


def _checked(step: Call) -> Call:
    # Built directly: `dataclasses.replace` costs several times more, on every Call planned.
    return Call(step.request, step.purpose, step.expect, partial(_checked_answer, step.then))


def _checked_answer(then: Callable[[Answer], StepResult], answer: Answer) -> StepResult:
    return then(answer).bind(within_url_limit)
