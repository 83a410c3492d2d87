"""The standard field tables of SPEC §5 and §8 as data, and the one interpreter that reads them.

>>> from pipeline.core.types import freeze_object
>>> msg = freeze_object({"userId": 7, "traits": {"gender": "F", "firstName": "Ada"}})
>>> apply_table(IDENTIFY, msg).unwrap().fields["gender"]
3
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from returns.result import Failure, Result, Success

from pipeline.core import errors, messages, paths
from pipeline.core.convert import CONVERTERS, Convert
from pipeline.core.errors import PipelineError
from pipeline.core.paths import PathList
from pipeline.core.types import EMPTY, JSON, JSONObject


@dataclass(frozen=True, slots=True)
class FieldRule:
    target: str
    source: PathList
    required: str | None = None  # the error message when the value is missing
    convert: Convert = "identity"


@dataclass(frozen=True, slots=True)
class Payload:
    """A body being built: its top-level fields and the warnings met on the way."""

    fields: JSONObject = field(default_factory=lambda: EMPTY)
    warnings: tuple[str, ...] = ()

    def merged(self, *layers: Mapping[str, JSON]) -> Payload:
        """Later layers override earlier ones, key by key."""
        combined = dict(self.fields)
        for layer in layers:
            combined.update(layer)
        return Payload(MappingProxyType(combined), self.warnings)


IDENTIFY: tuple[FieldRule, ...] = (
    FieldRule("custom_id", paths.USER_ID, required=messages.MISSING_USER_ID),
    FieldRule("email", paths.EMAIL),
    FieldRule("phone_number", paths.PHONE),
    FieldRule("first_name", paths.FIRST_NAME),
    FieldRule("last_name", paths.LAST_NAME),
    FieldRule("tags", paths.TAGS),
    FieldRule("city", paths.CITY),
    FieldRule("region", paths.REGION),
    FieldRule("country", paths.COUNTRY),
    FieldRule("gender", paths.GENDER, convert="gender_code"),
    FieldRule("status", paths.STATUS, convert="status_code"),
    FieldRule("google_url", paths.GOOGLE_URL),
    FieldRule("linkedin_url", paths.LINKEDIN_URL),
    FieldRule("twitter_url", paths.TWITTER_URL),
    FieldRule("facebook_url", paths.FACEBOOK_URL),
    FieldRule("gravatar_url", paths.AVATAR),
    FieldRule("timezone", paths.TIMEZONE),
)

# The trait names the identify table reads: never copied again as custom attributes (§5.2).
IDENTIFY_SOURCE_KEYS = frozenset(
    "id userId email phone firstName firstname first_name lastName lastname last_name tags "
    "city region country gender status googleUrl linkedinUrl twitterUrl facebookUrl timezone "
    "avatar avatarURL avatar_URL".split()
)

# `name` comes from the group traits object itself (§12.17), so it is not a path rule here.
COMPANY: tuple[FieldRule, ...] = (
    FieldRule("user_custom_id", paths.USER_ID, required=messages.MISSING_USER_ID),
    FieldRule("custom_id", paths.GROUP_ID),
    FieldRule("email", paths.EMAIL),
    FieldRule("address", paths.ADDRESS),
    FieldRule("city", paths.CITY),
    FieldRule("region", paths.REGION),
    FieldRule("country", paths.COUNTRY),
    FieldRule("description", paths.DESCRIPTION),
    FieldRule("phone_numbers", paths.PHONE),
    FieldRule("postal_code", paths.ZIPCODE),
    FieldRule("size", paths.SIZE),
    FieldRule("tags", paths.GROUP_TAGS),
)

COMPANY_SOURCE_KEYS = frozenset(
    "id userId groupId groupname email address city region country description phone zip "
    "zipcode postalcode size tags".split()
)

TRACK_TIMESTAMP = FieldRule("timestamp", paths.TIMESTAMP, convert="epoch_seconds")


def apply_table(
    rules: tuple[FieldRule, ...], message: JSONObject
) -> Result[Payload, PipelineError]:
    """Read every rule's value; a missing required one fails, a bad conversion warns."""
    fields: dict[str, JSON] = {}
    warnings: list[str] = []
    for rule in rules:
        raw = paths.read(message, rule.source)
        if raw is None:
            if rule.required is not None:
                return Failure(errors.instrumentation(rule.required))
            continue
        value, warning = CONVERTERS[rule.convert](raw)
        if warning is not None:
            warnings.append(warning)
        fields[rule.target] = value
    return Success(Payload(MappingProxyType(fields), tuple(warnings)))
