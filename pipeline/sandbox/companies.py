"""Company records: parsing a create/update body and rendering the v2 company representation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.sandbox.fields import Body, as_names, as_string

STRING_FIELDS = (
    "name",
    "custom_id",
    "user_custom_id",
    "email",
    "address",
    "city",
    "region",
    "country",
    "postal_code",
)
LATE_STRINGS = ("description", "category")
LOOSE_FIELDS = ("phone_numbers", "size")
"""Stored as sent: clients disagree on their types (a string or a list of phone numbers)."""
READ_ONLY = frozenset({"id", "employees", "created_at", "updated_at"})


@dataclass(frozen=True, slots=True)
class CompanyChanges:
    """A validated create/update body: only the keys it carried."""

    strings: dict[str, str | None]
    loose: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CompanyRecord:
    """One stored company; ``employees`` are user ids in the order they joined."""

    id: int
    created_at: str
    updated_at: str
    strings: dict[str, str | None] = field(
        default_factory=lambda: dict.fromkeys((*STRING_FIELDS, *LATE_STRINGS))
    )
    loose: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(LOOSE_FIELDS))
    tags: list[str] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)
    employees: list[int] = field(default_factory=list)
    member_since: dict[int, str] = field(default_factory=dict)

    @property
    def custom_id(self) -> str | None:
        """The client's own id of this company."""
        return self.strings["custom_id"]

    def apply(self, changes: CompanyChanges, now: str) -> None:
        """Merge a partial update in place; tags are only ever added."""
        self.strings.update(changes.strings)
        self.loose.update(changes.loose)
        self.tags.extend(tag for tag in dict.fromkeys(changes.tags) if tag not in self.tags)
        self.custom.update(changes.custom)
        self.updated_at = now

    def add_employee(self, user_id: int, now: str) -> None:
        """Link a user; linking twice keeps one entry and the first date."""
        if user_id not in self.member_since:
            self.employees.append(user_id)
            self.member_since[user_id] = now


def parse_company_body(body: Body) -> CompanyChanges:
    """Validate a company body: standard fields typed, every other key a custom attribute.

    >>> parse_company_body({"name": "Acme", "founded": 1947}).custom
    {'founded': 1947}
    """
    string_fields = (*STRING_FIELDS, *LATE_STRINGS)
    known = {*string_fields, *LOOSE_FIELDS, *READ_ONLY, "tags"}
    return CompanyChanges(
        strings={key: as_string(key, body[key]) for key in string_fields if key in body},
        loose={key: body[key] for key in LOOSE_FIELDS if key in body},
        tags=as_names("tags", body["tags"]) if body.get("tags") is not None else [],
        custom={key: value for key, value in body.items() if key not in known},
    )


def render_company(company: CompanyRecord, tag_ids: Mapping[str, int]) -> dict[str, Any]:
    """The v2 representation, custom attributes flattened as top-level keys."""
    return {
        "id": company.id,
        **{key: company.strings[key] for key in STRING_FIELDS},
        "phone_numbers": company.loose["phone_numbers"],
        **{key: company.strings[key] for key in LATE_STRINGS},
        "size": company.loose["size"],
        "tags": [{"id": tag_ids[name], "name": name} for name in company.tags],
        "employees": list(company.employees),
        "created_at": company.created_at,
        "updated_at": company.updated_at,
        **company.custom,
    }
