"""The SPEC's exact error texts, in one place (SPEC §3-§8, as the reference sends them).

Texts that carry a value are functions; the rest are constants.
"""

from __future__ import annotations

EVENT_TYPE_REQUIRED = "Event type is required"
EVENT_TOO_DEEP = "Event is nested too deeply to be read"
MISSING_USER_ID = 'Missing required value from "userId"'
EVENT_REQUIRED = "Parameter event is required"
URL_REQUIRED = "Parameter url is required"
PATH_REQUIRED = "Parameter path is required"
TIMESTAMP_REQUIRED = "Parameter timestamp is required"
NAME_REQUIRED = "Parameter name is required"
GROUP_ID_REQUIRED = "Parameter groupId is required"
LOOKUP_EMAIL_ABSENT = "Lookup field : email value is not present"
LOOKUP_PHONE_ABSENT = "Lookup field : phone value is not present"
DEFAULT_LOOKUP_EMPTY = "Default lookup field : email value is empty"
NO_USER_FOR_LOOKUP = "No user found for a given lookup field"
SEVERAL_USERS_FOR_LOOKUP = "Multiple users obtained for a given lookup field"
TRACK_NOT_FOUND = (
    "No user found with given lookup field, Track event cannot be completed if there is no "
    "valid user"
)
PAGE_NOT_FOUND = (
    "No user found with given lookup field. Page event cannot be completed if there is no "
    "valid user"
)
GROUP_USER_NOT_FOUND = "No user found with given userId"


def type_not_supported(lowered: str) -> str:
    return f"Event type {lowered} is not supported"


def lookup_not_supported(chosen: str) -> str:
    return f"Lookup field : {chosen} is not supported for this destination"
