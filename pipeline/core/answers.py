"""What User.com answered, and what each answer means (SPEC §4 and §10); pure.

>>> classify_lookup(Reply(404)).unwrap() is None
True
>>> classify_lookup(Reply(503)).failure().kind
'retryable'
>>> classify_lookup(Reply(200, {"id": 1})).unwrap()
{'id': 1}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from returns.result import Failure, Result, Success

from pipeline.core import errors, messages
from pipeline.core.errors import PipelineError
from pipeline.core.types import JSON, OBJECT_TYPES, JSONObject, is_present, thaw


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, its JSON body when it had one, and Retry-After in seconds."""

    status: int
    body: JSON = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Unreachable:
    """No answer at all: the request timed out or the connection failed."""

    reason: Literal["timeout", "connection"]
    detail: str = ""


Answer = Reply | Unreachable

# What an answer says, in the one set of words the engine, the run-level faults and the
# operator views share (DELIVERY §2, §3).
Kind = Literal[
    "ok",  # 2xx
    "redirect",  # 3xx: the URL is wrong
    "refused",  # 401/403: the key is refused
    "not found",  # 404
    "throttled",  # 429
    "client error",  # another 4xx: this request's content
    "server error",  # 5xx
    "odd",  # a status User.com does not give (1xx)
    "timeout",  # sent, no answer in time
    "lost",  # the connection broke mid-request
    "unreachable",  # no connection was ever made: the host cannot be reached
]
# Trouble an outage is made of (DELIVERY §3) and a retry may outlast (§2 `failed`).
FAILING: frozenset[Kind] = frozenset({"server error", "timeout", "lost", "unreachable"})
# httpx's names for a request that never reached a connected host.
_NEVER_CONNECTED = frozenset({"ConnectError", "ConnectTimeout"})


def meaning(answer: Answer) -> Kind:
    """What `answer` says: the one reading every layer above the flows uses.

    >>> meaning(Reply(404)), meaning(Unreachable("timeout", "ConnectTimeout"))
    ('not found', 'unreachable')
    """
    if isinstance(answer, Unreachable):
        if answer.detail in _NEVER_CONNECTED:
            return "unreachable"
        return "timeout" if answer.reason == "timeout" else "lost"
    return _status_kind(answer.status)


def _status_kind(status: int) -> Kind:
    if 200 <= status < 300:
        return "ok"
    if 300 <= status < 400:
        return "redirect"
    if status in (401, 403):
        return "refused"
    if status == 404:
        return "not found"
    if status == 429:
        return "throttled"
    if 400 <= status < 500:
        return "client error"
    return "server error" if status >= 500 else "odd"


def _said(body: JSON) -> str:
    """User.com's own short message, when its body carries one."""
    if isinstance(body, OBJECT_TYPES):
        for key in ("detail", "message", "error", "errors"):
            if body.get(key) is not None:
                said = body[key]
                text = said if isinstance(said, str) else json.dumps(thaw(said))
                return f": {text[:200]}"
    return ""


def answer_error(answer: Answer, doing: str) -> PipelineError:
    """The failure an unusable answer stands for; `doing` names the call for the message."""
    if isinstance(answer, Unreachable):
        return errors.retryable(
            f"User.com could not be reached while {doing} ({answer.reason}"
            f"{': ' + answer.detail[:200] if answer.detail else ''}); retry later"
        )
    status, said = answer.status, _said(answer.body)
    if status in (401, 403):
        return errors.auth(
            f"User.com refused the API key while {doing} ({status}{said}); "
            "check apiKey and appSubdomain in the destination config",
            401 if status == 401 else 403,
        )
    if status == 429:
        return errors.throttled(
            f"User.com is throttling requests while {doing} (429{said}); retry later",
            answer.retry_after,
        )
    if status >= 500:
        return errors.retryable(
            f"User.com failed while {doing} ({status}{said}); retry later",
            status if status <= 599 else None,
        )
    if 400 <= status < 500:
        return errors.aborted(f"User.com rejected the request while {doing} ({status}{said})")
    return errors.aborted(
        f"User.com gave an answer that was not understood while {doing} ({status}{said})"
    )


def _object(answer: Answer) -> JSONObject | None:
    if isinstance(answer, Reply) and isinstance(answer.body, OBJECT_TYPES):
        return answer.body
    return None


def classify_lookup(
    answer: Answer, doing: str = "looking up the user"
) -> Result[JSONObject | None, PipelineError]:
    """200 with an object: found; 404: not found (None); anything else: a failure."""
    if isinstance(answer, Reply) and answer.status == 404:
        return Success(None)
    found = _object(answer)
    if isinstance(answer, Reply) and answer.status == 200 and found is not None:
        return Success(found)
    return Failure(answer_error(answer, doing))


def classify_phone_search(answer: Answer) -> Result[JSONObject | None, PipelineError]:
    """The phone search answers a list: exactly one user, else an error (SPEC §4)."""
    return classify_lookup(answer, "searching users by phone").bind(_single_result)


def _single_result(listing: JSONObject | None) -> Result[JSONObject | None, PipelineError]:
    if listing is None:
        return Success(None)
    results = listing.get("results")
    if not isinstance(results, tuple):
        return Failure(
            errors.aborted(
                "User.com answered the phone search without a results list; it was not understood"
            )
        )
    if not results:
        return Failure(errors.not_found(messages.NO_USER_FOR_LOOKUP))
    if len(results) > 1:
        return Failure(errors.not_found(messages.SEVERAL_USERS_FOR_LOOKUP))
    user = results[0]
    if not isinstance(user, OBJECT_TYPES):
        return Failure(errors.aborted("User.com answered the phone search with a non-object user"))
    return Success(user)


def classify_write(answer: Answer, doing: str) -> Result[JSONObject, PipelineError]:
    """A write succeeded only with a 2xx JSON object holding an `id` (SPEC §8)."""
    written = _object(answer)
    if (
        isinstance(answer, Reply)
        and 200 <= answer.status < 300
        and written is not None
        and is_present(written.get("id"))
    ):
        return Success(written)
    return Failure(answer_error(answer, doing))
