"""Which User.com user an event is about, and the request that finds it (SPEC §4); pure.

>>> from pipeline.core.types import freeze_object
>>> resolve_lookup(freeze_object({"userId": "u/1"})).unwrap()
Lookup(by='userId', value='u/1', request=<Request GET /users-by-id/u/1/>)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from returns.result import Failure, Result, Success

from pipeline.core import errors, paths
from pipeline.core.answers import Answer, classify_lookup, classify_phone_search
from pipeline.core.calls import Request
from pipeline.core.errors import PipelineError
from pipeline.core.types import JSON, JSONObject, as_text, is_present

LookupBy = Literal["userKey", "email", "phone", "userId"]

# The integrations object of this destination may be named any of these (SPEC §4.2).
INTEGRATION_NAMES = ("user", "USER", "User", "User.com", "user.com", "USER.com")


@dataclass(frozen=True, slots=True)
class Lookup:
    by: LookupBy
    value: str
    request: Request

    def classify(self, answer: Answer) -> Result[JSONObject | None, PipelineError]:
        """The found user, None when there is none, or the failure the answer means."""
        if self.by == "phone":
            return classify_phone_search(answer)
        return classify_lookup(answer)


def search(by: LookupBy, query_key: str, value: JSON) -> Lookup:
    text = as_text(value)
    return Lookup(by, text, Request("GET", ("users", "search"), ((query_key, text),)))


def by_user_id(value: JSON) -> Lookup:
    text = as_text(value)
    return Lookup("userId", text, Request("GET", ("users-by-id", text)))


def user_key(message: JSONObject) -> JSON:
    """The first `{type: "userKey", id}` of context.externalId with a usable id."""
    external = paths.get_path(message, ("context", "externalId"))
    for entry in external if isinstance(external, tuple) else ():
        if isinstance(entry, Mapping) and entry.get("type") == "userKey":
            key = entry.get("id")
            if isinstance(key, str | int | float) and not isinstance(key, bool) and key != "":
                return key
    return None


def lookup_field(message: JSONObject) -> JSON:
    """`lookup` of the first integrations entry for this destination that is an object."""
    integrations = message.get("integrations")
    if not isinstance(integrations, Mapping):
        return None
    for name in INTEGRATION_NAMES:
        options = integrations.get(name)
        if isinstance(options, Mapping):
            return options.get("lookup")
    return None


def _by_field(message: JSONObject, field: JSON) -> Result[Lookup, PipelineError]:
    chosen = as_text(field)
    if chosen.lower() == "email":
        email = paths.read(message, paths.EMAIL)
        if email is None:
            return Failure(errors.instrumentation("Lookup field : email value is not present"))
        return Success(search("email", "email", email))
    if chosen.lower() == "phone":
        phone = paths.read(message, paths.PHONE)
        if phone is None:
            return Failure(errors.instrumentation("Lookup field : phone value is not present"))
        return Success(search("phone", "phone_number", phone))
    return Failure(
        errors.instrumentation(f"Lookup field : {chosen} is not supported for this destination")
    )


def resolve_lookup(message: JSONObject) -> Result[Lookup, PipelineError]:
    """SPEC §4 precedence: userKey, integrations lookup field, userId, then email."""
    key = user_key(message)
    if key is not None:
        return Success(search("userKey", "key", key))
    field = lookup_field(message)
    if is_present(field):
        return _by_field(message, field)
    if is_present(message.get("userId")):
        return Success(by_user_id(paths.read(message, paths.USER_ID)))
    email = paths.read(message, paths.EMAIL)
    if email is not None:
        return Success(search("email", "email", email))
    return Failure(errors.instrumentation("Default lookup field : email value is empty"))
