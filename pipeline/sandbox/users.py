"""User records: parsing a create/update body and rendering the v2 user representation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipeline.sandbox.fields import Body, as_choice, as_names, as_string

GENDERS: Mapping[int, str] = MappingProxyType({1: "unknown", 2: "male", 3: "female"})
STATUSES: Mapping[int, str] = MappingProxyType({1: "visitor", 2: "user"})

NAME_PARTS = ("first_name", "last_name")
URL_FIELDS = ("facebook_url", "linkedin_url", "twitter_url", "google_url", "gravatar_url")
IDENTITY_FIELDS = ("custom_id", "email")
PLACE_FIELDS = ("city", "region", "country", "timezone")
STRING_LIMITS: Mapping[str, int] = MappingProxyType({"first_name": 40, "last_name": 40})
STRING_FIELDS = (*IDENTITY_FIELDS, "phone_number", *NAME_PARTS, *PLACE_FIELDS, *URL_FIELDS)
READ_ONLY = frozenset({"id", "user_key", "name", "created_at", "updated_at", "companies"})
"""Keys of the representation that a request body cannot set; they are ignored."""


@dataclass(frozen=True, slots=True)
class UserChanges:
    """A validated create/update body: only the keys it carried."""

    strings: dict[str, str | None]
    gender: str | None = None
    status: str | None = None
    tags: list[str] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)
    company_custom_id: str | None = None


@dataclass(slots=True)
class UserRecord:
    """One stored user; ``strings`` holds every standard string field, set or not."""

    id: int
    user_key: str
    created_at: str
    updated_at: str
    strings: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(STRING_FIELDS))
    gender: str = "unknown"
    status: str = "visitor"
    tags: list[str] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)

    @property
    def custom_id(self) -> str | None:
        """The client's own id of this user."""
        return self.strings["custom_id"]

    def apply(self, changes: UserChanges, now: str) -> None:
        """Merge a partial update in place; tags are only ever added."""
        self.strings.update(changes.strings)
        self.gender = changes.gender or self.gender
        self.status = changes.status or self.status
        self.tags.extend(tag for tag in dict.fromkeys(changes.tags) if tag not in self.tags)
        self.custom.update(changes.custom)
        self.updated_at = now


def parse_user_body(body: Body) -> UserChanges:
    """Validate a user body: standard fields typed, every other key a custom attribute.

    >>> parse_user_body({"gender": 3, "first_name": "Ann", "plan": "pro"}).gender
    'female'
    """
    strings = {
        key: as_string(key, body[key], STRING_LIMITS.get(key))
        for key in STRING_FIELDS
        if key in body
    }
    known = {*STRING_FIELDS, *READ_ONLY, "gender", "status", "tags", "company_custom_id"}
    return UserChanges(
        strings=strings,
        gender=as_choice("gender", body["gender"], GENDERS) if "gender" in body else None,
        status=as_choice("status", body["status"], STATUSES) if "status" in body else None,
        tags=as_names("tags", body["tags"]) if body.get("tags") is not None else [],
        custom={key: value for key, value in body.items() if key not in known},
        company_custom_id=as_string("company_custom_id", body.get("company_custom_id")),
    )


def full_name(user: UserRecord) -> str | None:
    """First and last name joined, or None when both are empty.

    >>> full_name(UserRecord(1, "k", "t", "t", strings={"first_name": "Ann", "last_name": None}))
    'Ann'
    """
    parts = (user.strings.get(key) or "" for key in NAME_PARTS)
    return " ".join(parts).strip() or None


def render_user(
    user: UserRecord, tag_ids: Mapping[str, int], companies: list[dict[str, Any]]
) -> dict[str, Any]:
    """The v2 representation: ``name`` instead of its parts, enums as names, custom keys flat."""
    return {
        "id": user.id,
        "user_key": user.user_key,
        **{key: user.strings[key] for key in IDENTITY_FIELDS},
        "name": full_name(user),
        "phone_number": user.strings["phone_number"],
        "gender": user.gender,
        "status": user.status,
        **{key: user.strings[key] for key in (*PLACE_FIELDS, *URL_FIELDS)},
        "tags": [{"id": tag_ids[name], "name": name} for name in user.tags],
        "companies": companies,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        **user.custom,
    }
