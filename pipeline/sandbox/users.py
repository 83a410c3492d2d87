"""User records: parsing a create/update body and rendering the v2 user representation.

Evidence levels (DOC, DOC-OLD, CLIENT, MOCK, INFER, UNKNOWN) and sections (§) refer to
/work/shared/usercom-api.md, the reference this model follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pipeline.sandbox.errors import ApiError
from pipeline.sandbox.fields import Body, as_choice, as_names, as_string

UserKeyField = Literal["user_key", "key"]
"""The name a user object gives its cookie key: ``user_key`` (the D-key table, RudderStack's
mocks: DOC/MOCK) or ``key`` (every v2 docs example response: DOC). §3.4, §9 "user key field"."""
USER_KEY_FIELDS: tuple[UserKeyField, ...] = ("user_key", "key")

UnknownAttributes = Literal["accept", "ignore", "reject"]
"""What a user body's non-standard keys do: stored as custom attributes, dropped silently, or
a 400 naming them. The real v2 behaviour is UNKNOWN (§3.3, §6 "Custom attrs", §9 "Unknown
traits")."""
UNKNOWN_ATTRIBUTE_MODES: tuple[UnknownAttributes, ...] = ("accept", "ignore", "reject")

GENDERS: Mapping[int, str] = MappingProxyType({1: "unknown", 2: "male", 3: "female"})
STATUSES: Mapping[int, str] = MappingProxyType({1: "visitor", 2: "user"})

NAME_PARTS = ("first_name", "last_name")
URL_FIELDS = ("facebook_url", "linkedin_url", "twitter_url", "google_url", "gravatar_url")
IDENTITY_FIELDS = ("custom_id", "email")
PLACE_FIELDS = ("city", "region", "country", "timezone")
STRING_LIMITS: Mapping[str, int] = MappingProxyType(
    {"first_name": 40, "last_name": 40, "city": 64, "phone_number": 64}
)
"""Longest accepted value (§3.5): names 40 (D-create, DOC); city and phone 64 (dotnet SDK
c80ecd3 truncates "based on user.com requirements", CLIENT). Over-long values were a production
"sync issue" (§9), so the API enforces them: 400 with a field error here (the body is INFER)."""
STRING_FIELDS = (*IDENTITY_FIELDS, "phone_number", *NAME_PARTS, *PLACE_FIELDS, *URL_FIELDS)
LOOSE_FIELDS: Mapping[str, Any] = MappingProxyType(
    {"score": 0, "unsubscribed": False, "notifications": True, "assigned_to": None}
)
"""Standard attributes stored as sent (their types are not documented), with the value a new
user shows: the allowed standard attributes of D-mass-std (DOC, §4.5); defaults from the
§3.1 examples (DOC/MOCK) and ``assigned_to`` from D-model (DOC)."""
READ_ONLY = frozenset({"id", *USER_KEY_FIELDS, "name", "created_at", "updated_at", "companies"})
"""Keys of the representation that a request body cannot set; they are ignored (INFER: DRF
read-only fields)."""
STANDARD_KEYS = frozenset(
    {*STRING_FIELDS, *LOOSE_FIELDS, *READ_ONLY, "gender", "status", "tags", "company_custom_id"}
)
"""Every key a user body may carry that is not a custom attribute."""


@dataclass(frozen=True, slots=True)
class UserChanges:
    """A validated create/update body: only the keys it carried."""

    strings: dict[str, str | None]
    gender: str | None = None
    status: str | None = None
    tags: list[str] = field(default_factory=list)
    loose: dict[str, Any] = field(default_factory=dict)
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
    loose: dict[str, Any] = field(default_factory=lambda: dict(LOOSE_FIELDS))
    custom: dict[str, Any] = field(default_factory=dict)

    @property
    def custom_id(self) -> str | None:
        """The client's own id of this user."""
        return self.strings["custom_id"]

    def apply(self, changes: UserChanges, now: str) -> None:
        """Merge a partial update in place; tags are only ever added (OLD-uoc, DOC-OLD)."""
        self.strings.update(changes.strings)
        self.gender = changes.gender or self.gender
        self.status = changes.status or self.status
        self.tags.extend(tag for tag in dict.fromkeys(changes.tags) if tag not in self.tags)
        self.loose.update(changes.loose)
        self.custom.update(changes.custom)
        self.updated_at = now


def parse_user_body(body: Body, unknown: UnknownAttributes = "accept") -> UserChanges:
    """Validate a user body: standard fields typed, every other key a custom attribute.

    Other keys are custom attributes sent as plain top-level keys (D-create, D-update, D-uoc:
    DOC); ``unknown`` says what happens to them (§6, §9: the real behaviour is UNKNOWN).

    >>> parse_user_body({"gender": 3, "first_name": "Ann", "plan": "pro"}).gender
    'female'
    >>> parse_user_body({"plan": "pro"}, unknown="ignore").custom
    {}
    >>> parse_user_body({"plan": "pro"}, unknown="reject").body  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.sandbox.errors.ApiError: (400, {'errors': {'plan': ['Unknown attribute "plan"...']}})
    """
    strings = {
        key: as_string(key, body[key], STRING_LIMITS.get(key))
        for key in STRING_FIELDS
        if key in body
    }
    custom = {key: value for key, value in body.items() if key not in STANDARD_KEYS}
    if custom and unknown == "reject":
        # v2 docs: a custom attribute must be created in the app before it is sent (D-create,
        # DOC); the 400 body follows the sandbox's field-error shape (GO, CLIENT / INFER).
        raise ApiError(
            400,
            {
                "errors": {
                    key: [f'Unknown attribute "{key}": create it in the app first.']
                    for key in custom
                }
            },
        )
    return UserChanges(
        strings=strings,
        gender=as_choice("gender", body["gender"], GENDERS) if "gender" in body else None,
        status=as_choice("status", body["status"], STATUSES) if "status" in body else None,
        tags=as_names("tags", body["tags"]) if body.get("tags") is not None else [],
        loose={key: body[key] for key in LOOSE_FIELDS if key in body},
        custom=custom if unknown == "accept" else {},
        company_custom_id=as_string("company_custom_id", body.get("company_custom_id")),
    )


def full_name(user: UserRecord) -> str | None:
    """First and last name joined, or None when both are empty (D-create example, DOC).

    >>> full_name(UserRecord(1, "k", "t", "t", strings={"first_name": "Ann", "last_name": None}))
    'Ann'
    """
    parts = (user.strings.get(key) or "" for key in NAME_PARTS)
    return " ".join(parts).strip() or None


def render_user(
    user: UserRecord,
    tag_ids: Mapping[str, int],
    companies: list[dict[str, Any]],
    key_field: UserKeyField = "user_key",
) -> dict[str, Any]:
    """The v2 representation (§3.1: DOC examples and MOCK): ``name`` instead of its parts,
    enums as names (§3.2), custom attributes flat by name (§3.3, INFER), the cookie key under
    ``key_field`` (§3.4, §9: the docs conflict)."""
    return {
        "id": user.id,
        key_field: user.user_key,
        **{key: user.strings[key] for key in IDENTITY_FIELDS},
        "name": full_name(user),
        "phone_number": user.strings["phone_number"],
        "gender": user.gender,
        "status": user.status,
        **{key: user.strings[key] for key in (*PLACE_FIELDS, *URL_FIELDS)},
        "tags": [{"id": tag_ids[name], "name": name} for name in user.tags],
        "companies": companies,
        **user.loose,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        **user.custom,
    }
