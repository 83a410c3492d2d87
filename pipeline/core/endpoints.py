"""The catalogue of User.com endpoints this project calls (usercom-api.md); pure data.

Each request names its endpoint and its subject (the id, key, email or phone it is about),
so what a call means is read from its name, never decoded back from a URL path. Adding an
endpoint is one entry here.

>>> CATALOGUE["user_by_email"].method, CATALOGUE["user_by_email"].query
('GET', 'email')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal
from urllib.parse import quote

Method = Literal["GET", "POST", "PUT"]

EndpointName = Literal[
    "user_by_id",
    "user_by_key",
    "user_by_email",
    "user_by_phone",
    "upsert_user",
    "create_user",
    "update_user",
    "event",
    "user_event_by_id",
    "site_view",
    "company_by_id",
    "create_company",
    "update_company",
    "add_member",
]

# Where the subject goes in a path template.
SUBJECT = "{subject}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One User.com endpoint: its method, path template and what it is for."""

    name: EndpointName
    method: Method
    path: tuple[str, ...]
    what: str
    query: str | None = None  # a search: the subject goes in this query parameter
    collection: bool = False  # always exists: a 404 here means the base URL is wrong
    finds: Literal["user", "company"] | None = None  # a lookup, and of what

    def __post_init__(self) -> None:
        for part in self.path:
            if part != SUBJECT and (part in (".", "..") or quote(part, safe="") != part):
                raise ValueError(f"{self.name}: path part {part!r} would need encoding")

    @property
    def needs_subject(self) -> bool:
        return self.query is not None or SUBJECT in self.path


def _entries(*endpoints: Endpoint) -> Mapping[EndpointName, Endpoint]:
    return MappingProxyType({endpoint.name: endpoint for endpoint in endpoints})


CATALOGUE: Mapping[EndpointName, Endpoint] = _entries(
    Endpoint("user_by_id", "GET", ("users-by-id", SUBJECT), "user by custom_id", finds="user"),
    Endpoint(
        "user_by_key", "GET", ("users", "search"), "user by user_key", query="key", finds="user"
    ),
    Endpoint(
        "user_by_email", "GET", ("users", "search"), "user by email", query="email", finds="user"
    ),
    Endpoint(
        "user_by_phone",
        "GET",
        ("users", "search"),
        "users by phone number (a list)",
        query="phone_number",
        finds="user",
    ),
    Endpoint(
        "upsert_user",
        "POST",
        ("users", "update_or_create"),
        "create or update a user, matched on custom_id",
        collection=True,
    ),
    Endpoint("create_user", "POST", ("users",), "create a user", collection=True),
    Endpoint("update_user", "PUT", ("users", SUBJECT), "update a user by id"),
    Endpoint("event", "POST", ("events",), "record an event of a user", collection=True),
    # Known from older docs and from four public clients (usercom-api.md §9); may be missing,
    # so its 404 falls back to the lookup and POST /events/ (DELIVERY §3).
    Endpoint(
        "user_event_by_id",
        "POST",
        ("users-by-id", SUBJECT, "events"),
        "record an event of the user with this custom_id",
    ),
    Endpoint("site_view", "POST", ("site-views",), "record a page view", collection=True),
    Endpoint(
        "company_by_id",
        "GET",
        ("companies-by-id", SUBJECT),
        "company by custom_id",
        finds="company",
    ),
    Endpoint("create_company", "POST", ("companies",), "create a company", collection=True),
    Endpoint("update_company", "PUT", ("companies", SUBJECT), "update a company by id"),
    Endpoint("add_member", "POST", ("companies", SUBJECT, "add_member"), "add a user to a company"),
)
