"""Which User.com user an event is about, and the request that finds it (SPEC §4); pure.

>>> from pipeline.core.types import freeze_object
>>> resolve_lookup(freeze_object({"userId": "u/1"})).unwrap()
Lookup(by='userId', value='u/1')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from returns.result import Failure, Result, Success

from pipeline.core import errors, messages, paths
from pipeline.core.answers import Answer, classify_lookup, classify_phone_search
from pipeline.core.calls import Request, call
from pipeline.core.endpoints import EndpointName
from pipeline.core.errors import PipelineError
from pipeline.core.types import JSON, OBJECT_TYPES, JSONObject, as_text, is_present

LookupBy = Literal["userKey", "email", "phone", "userId"]

# The integrations object of this destination may be named any of these (SPEC §4.2).
INTEGRATION_NAMES = ("user", "USER", "User", "User.com", "user.com", "USER.com")


_ENDPOINTS: Mapping[LookupBy, EndpointName] = MappingProxyType(
    {
        "userKey": "user_by_key",
        "email": "user_by_email",
        "phone": "user_by_phone",
        "userId": "user_by_id",
    }
)


@dataclass(frozen=True, slots=True)
class Lookup:
    """How to find the user: by what, and the value to look for."""

    by: LookupBy
    value: str

    @property
    def request(self) -> Request:
        return call(_ENDPOINTS[self.by], self.value)

    def classify(self, answer: Answer) -> Result[JSONObject | None, PipelineError]:
        """The found user, None when there is none, or the failure the answer means."""
        if self.by == "phone":
            return classify_phone_search(answer)
        return classify_lookup(answer)


def lookup(by: LookupBy, value: JSON) -> Lookup:
    return Lookup(by, as_text(value))


def user_key(message: JSONObject) -> JSON:
    """The first `{type: "userKey", id}` of context.externalId with a usable id."""
    external = paths.get_path(message, ("context", "externalId"))
    for entry in external if isinstance(external, tuple) else ():
        if isinstance(entry, OBJECT_TYPES) and entry.get("type") == "userKey":
            key = entry.get("id")
            if isinstance(key, str | int | float) and not isinstance(key, bool) and key != "":
                return key
    return None


def lookup_field(message: JSONObject) -> JSON:
    """`lookup` of the first integrations entry for this destination that is an object."""
    integrations = message.get("integrations")
    if integrations is None or not isinstance(integrations, OBJECT_TYPES):
        return None
    for name in INTEGRATION_NAMES:
        options = integrations.get(name)
        if isinstance(options, OBJECT_TYPES):
            return options.get("lookup")
    return None


def _by_field(message: JSONObject, field: JSON) -> Result[Lookup, PipelineError]:
    chosen = as_text(field)
    if chosen.lower() == "email":
        email = paths.read(message, paths.EMAIL)
        if email is None:
            return Failure(errors.instrumentation(messages.LOOKUP_EMAIL_ABSENT))
        return Success(lookup("email", email))
    if chosen.lower() == "phone":
        phone = paths.read(message, paths.PHONE)
        if phone is None:
            return Failure(errors.instrumentation(messages.LOOKUP_PHONE_ABSENT))
        return Success(lookup("phone", phone))
    return Failure(errors.instrumentation(messages.lookup_not_supported(chosen)))


def resolve_lookup(message: JSONObject) -> Result[Lookup, PipelineError]:
    """SPEC §4 precedence: userKey, integrations lookup field, userId, then email."""
    key = user_key(message)
    if key is not None:
        return Success(lookup("userKey", key))
    field = lookup_field(message)
    if is_present(field):
        return _by_field(message, field)
    if is_present(message.get("userId")):
        return Success(lookup("userId", paths.read(message, paths.USER_ID)))
    email = paths.read(message, paths.EMAIL)
    if email is not None:
        return Success(lookup("email", email))
    return Failure(errors.instrumentation(messages.DEFAULT_LOOKUP_EMPTY))
