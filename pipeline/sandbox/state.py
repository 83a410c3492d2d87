"""The in-memory User.com account behind one sandbox app, and the operations on it.

Lookups by custom id, user key, email and phone use indexes kept up to date on every write, so
a request costs the same however many users the account holds. Evidence levels and sections
(§) refer to /work/shared/usercom-api.md.
"""

from __future__ import annotations

import bisect
import random
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.sandbox.companies import (
    CompanyChanges,
    CompanyRecord,
    parse_company_body,
    render_company,
)
from pipeline.sandbox.errors import invalid, not_found
from pipeline.sandbox.fields import (
    Body,
    as_int,
    as_string,
    as_timestamp,
    as_unix_seconds,
    required,
)
from pipeline.sandbox.users import (
    UnknownAttributes,
    UserChanges,
    UserKeyField,
    UserRecord,
    parse_user_body,
    render_user,
)

Clock = Callable[[], datetime]
KEY_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 12
SHARED_INDEXES = ("email", "phone_number")
"""Standard fields several users may share (§9, help centre): indexed to lists of user ids."""


def utc_now() -> datetime:
    """The real time, in UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and a trailing Z, as User.com prints timestamps.

    >>> iso(datetime(2017, 6, 13, 12, 22, 38, 748373, tzinfo=UTC))
    '2017-06-13T12:22:38.748373Z'
    """
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class SandboxState:
    """Users, companies, events and site views of one app; every id is auto-incremented.

    ``user_key_field`` names the cookie key in API user objects (``/__sandbox__/state`` always
    says ``user_key``); ``unknown_attributes`` is what non-standard keys of a user body do.
    """

    rng: random.Random
    clock: Clock = utc_now
    user_key_field: UserKeyField = "user_key"
    unknown_attributes: UnknownAttributes = "accept"
    users: dict[int, UserRecord] = field(default_factory=dict)
    companies: dict[int, CompanyRecord] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    site_views: list[dict[str, Any]] = field(default_factory=list)
    event_names: set[str] = field(default_factory=set)
    tag_ids: dict[str, int] = field(default_factory=dict)
    request_count: int = 0
    last_event_id: int = 0
    user_id_by_custom_id: dict[str, int] = field(default_factory=dict)
    """Index: custom id -> user id (custom ids are unique, §9)."""
    user_id_by_key: dict[str, int] = field(default_factory=dict)
    """Index: user key -> user id."""
    user_ids_by: dict[str, dict[str, list[int]]] = field(
        default_factory=lambda: {name: {} for name in SHARED_INDEXES}
    )
    """Indexes: ``email`` / ``phone_number`` -> ids of the users with that value, ascending."""
    company_id_by_custom_id: dict[str, int] = field(default_factory=dict)
    """Index: company custom id -> company id."""
    memberships: dict[int, list[int]] = field(default_factory=dict)
    """User id -> ascending ids of the companies it belongs to."""

    def now(self) -> str:
        """The clock's current time, formatted."""
        return iso(self.clock())

    # users

    def user(self, user_id: int) -> UserRecord:
        """The user with this internal id, or a 404."""
        if user_id not in self.users:
            raise not_found()
        return self.users[user_id]

    def user_by_custom_id(self, custom_id: str) -> UserRecord:
        """The user with this custom id, or a 404."""
        match = self.users_where("custom_id", custom_id)
        if not match:
            raise not_found()
        return match[0]

    def users_where(self, key: str, value: str) -> list[UserRecord]:
        """Users whose ``user_key`` or standard string field equals ``value``, by id.

        ``custom_id``, ``user_key``, ``email`` and ``phone_number`` come from an index; any
        other field is a scan.
        """
        if key in ("custom_id", "user_key"):
            index = self.user_id_by_custom_id if key == "custom_id" else self.user_id_by_key
            found = index.get(value)
            return [] if found is None else [self.users[found]]
        if key in self.user_ids_by:
            return [self.users[user_id] for user_id in self.user_ids_by[key].get(value, ())]
        return [user for user in self.users.values() if user.strings.get(key) == value]

    def create_user(self, body: Body) -> UserRecord:
        """Store a new user; a taken ``custom_id`` is a 400."""
        changes = parse_user_body(body, self.unknown_attributes)
        self._check_user_custom_id(changes, owner=None)
        now = self.now()
        user = UserRecord(len(self.users) + 1, self._new_user_key(), now, now)
        self.users[user.id] = user
        self.user_id_by_key[user.user_key] = user.id
        self._apply_user(user, changes, now)
        return user

    def update_user(self, user: UserRecord, body: Body) -> UserRecord:
        """Apply a partial update; moving to another user's ``custom_id`` is a 400."""
        changes = parse_user_body(body, self.unknown_attributes)
        self._check_user_custom_id(changes, owner=user)
        self._apply_user(user, changes, self.now())
        return user

    def update_or_create_user(self, body: Body) -> tuple[UserRecord, bool]:
        """Update the user matching ``custom_id`` or create one; True when created."""
        custom_id = as_string("custom_id", required(body, "custom_id"))
        match = self.users_where("custom_id", custom_id or "")
        if match:
            return self.update_user(match[0], body), False
        return self.create_user(body), True

    def show_user(self, user: UserRecord, key_field: UserKeyField | None = None) -> dict[str, Any]:
        """The API representation of a user, with the companies it belongs to.

        The cookie key is named ``key_field``, by default the app's ``user_key_field``.
        """
        companies = []
        for company_id in self.memberships.get(user.id, ()):
            company = self.companies[company_id]
            since = company.member_since[user.id]
            companies.append(
                {"id": company.id, "name": company.strings["name"], "member_since": since}
            )
        return render_user(user, self.tag_ids, companies, key_field or self.user_key_field)

    # events and site views

    def create_event(self, body: Body) -> dict[str, Any]:
        """Record an event of an existing user; ``created`` = first event of that name."""
        user_id = as_int("user_id", required(body, "user_id"))
        if user_id not in self.users:
            raise invalid("user_id", f'Invalid pk "{user_id}" - object does not exist.')
        return self.record_event(self.users[user_id], body)

    def record_event(self, user: UserRecord, body: Body) -> dict[str, Any]:
        """Record an event of ``user`` from ``{name, timestamp, data}`` (§4.9, D-event DOC):
        ``{"id", "created"}``, ``created`` = first event of that name in the app."""
        user_id = user.id
        name = as_string("name", required(body, "name")) or ""
        timestamp = body.get("timestamp")
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise invalid("data", "Expected a dictionary of items.")
        self.events.append(
            {
                "user_id": user_id,
                "name": name,
                "timestamp": (
                    int(self.clock().timestamp())
                    if timestamp is None
                    else as_unix_seconds("timestamp", timestamp)
                ),
                "data": data or {},
            }
        )
        created = name not in self.event_names
        self.event_names.add(name)
        self.last_event_id += 1
        return {"id": self.last_event_id, "created": created}

    def create_site_view(self, body: Body) -> dict[str, Any]:
        """Record a page view of the user whose ``user_key`` is ``client_user``."""
        client_user = as_string("client_user", required(body, "client_user")) or ""
        if client_user not in self.user_id_by_key:
            raise invalid("client_user", f'Invalid user key "{client_user}" - no such user.')
        timestamp = body.get("timestamp")
        view = {
            "id": len(self.site_views) + 1,
            "client_user": client_user,
            "page_domain": as_string("page_domain", body.get("page_domain")),
            "page_path": as_string("page_path", body.get("page_path")),
            "timestamp": self.now() if timestamp is None else as_timestamp("timestamp", timestamp),
        }
        self.site_views.append(view)
        return dict(view)

    # companies

    def company(self, company_id: int) -> CompanyRecord:
        """The company with this internal id, or a 404."""
        if company_id not in self.companies:
            raise not_found()
        return self.companies[company_id]

    def company_by_custom_id(self, custom_id: str) -> CompanyRecord:
        """The company with this custom id, or a 404."""
        match = self.companies_where(custom_id)
        if not match:
            raise not_found()
        return match[0]

    def companies_where(self, custom_id: str) -> list[CompanyRecord]:
        """Companies with this custom id (at most one)."""
        found = self.company_id_by_custom_id.get(custom_id)
        return [] if found is None else [self.companies[found]]

    def create_company(self, body: Body) -> CompanyRecord:
        """Store a new company, linking the user named by ``user_custom_id`` if it exists."""
        changes = parse_company_body(body)
        self._check_company_custom_id(changes.strings.get("custom_id"), owner=None)
        now = self.now()
        company = CompanyRecord(len(self.companies) + 1, now, now)
        self.companies[company.id] = company
        return self._apply_company(company, changes, now)

    def update_company(self, company: CompanyRecord, body: Body) -> CompanyRecord:
        """Apply a partial update, linking the user named by ``user_custom_id`` if it exists."""
        changes = parse_company_body(body)
        self._check_company_custom_id(changes.strings.get("custom_id"), owner=company)
        return self._apply_company(company, changes, self.now())

    def add_member(self, company: CompanyRecord, body: Body) -> dict[str, Any]:
        """Link a user given by ``user_id`` and/or ``user_custom_id``; both must agree."""
        found: list[UserRecord] = []
        if body.get("user_id") is not None:
            user_id = as_int("user_id", body["user_id"])
            if user_id not in self.users:
                raise invalid("user_id", f'Invalid pk "{user_id}" - object does not exist.')
            found.append(self.users[user_id])
        if body.get("user_custom_id") is not None:
            custom_id = as_string("user_custom_id", body["user_custom_id"]) or ""
            match = self.users_where("custom_id", custom_id)
            if not match:
                raise invalid("user_custom_id", f'No user with custom id "{custom_id}".')
            found.append(match[0])
        if not found:
            raise invalid("user_id", "Provide user_id or user_custom_id.")
        if found[0] is not found[-1]:
            raise invalid("user_custom_id", "It names another user than user_id.")
        self._link(company, found[0].id, self.now())
        return {"id": company.id, "user_id": found[0].id, "added": True}

    def show_company(self, company: CompanyRecord) -> dict[str, Any]:
        """The API representation of a company."""
        return render_company(company, self.tag_ids)

    # whole state

    def snapshot(self) -> dict[str, Any]:
        """Everything stored, as ``GET /__sandbox__/state`` shows it."""
        return {
            "users": [self.show_user(user, "user_key") for user in self.users.values()],
            "companies": [self.show_company(company) for company in self.companies.values()],
            "events": [dict(event) for event in self.events],
            "site_views": [dict(view) for view in self.site_views],
            "request_count": self.request_count,
        }

    # helpers

    def _new_user_key(self) -> str:
        while (key := "".join(self.rng.choices(KEY_ALPHABET, k=KEY_LENGTH))) in self.user_id_by_key:
            pass
        return key

    def _register_tags(self, names: Iterable[str]) -> None:
        for name in names:
            self.tag_ids.setdefault(name, len(self.tag_ids) + 1)

    def _check_user_custom_id(self, changes: UserChanges, owner: UserRecord | None) -> None:
        custom_id = changes.strings.get("custom_id")
        if custom_id is None:
            return
        if any(user is not owner for user in self.users_where("custom_id", custom_id)):
            raise invalid("custom_id", "user with this custom id already exists")

    def _check_company_custom_id(self, custom_id: str | None, owner: CompanyRecord | None) -> None:
        if custom_id is None:
            return
        if any(company is not owner for company in self.companies_where(custom_id)):
            raise invalid("custom_id", "company with this custom id already exists")

    def _apply_user(self, user: UserRecord, changes: UserChanges, now: str) -> None:
        self._register_tags(changes.tags)
        before = {key: user.strings[key] for key in ("custom_id", *SHARED_INDEXES)}
        user.apply(changes, now)
        self._reindex_user(user, before)
        if changes.company_custom_id is not None:
            for company in self.companies_where(changes.company_custom_id):
                self._link(company, user.id, now)

    def _reindex_user(self, user: UserRecord, before: dict[str, str | None]) -> None:
        old, new = before["custom_id"], user.strings["custom_id"]
        if old != new:
            if old is not None:
                del self.user_id_by_custom_id[old]
            if new is not None:
                self.user_id_by_custom_id[new] = user.id
        for name in SHARED_INDEXES:
            old, new = before[name], user.strings[name]
            if old == new:
                continue
            index = self.user_ids_by[name]
            if old is not None:
                index[old].remove(user.id)
                if not index[old]:
                    del index[old]
            if new is not None:
                bisect.insort(index.setdefault(new, []), user.id)

    def _link(self, company: CompanyRecord, user_id: int, now: str) -> None:
        if user_id not in company.member_since:
            bisect.insort(self.memberships.setdefault(user_id, []), company.id)
        company.add_employee(user_id, now)

    def _apply_company(
        self, company: CompanyRecord, changes: CompanyChanges, now: str
    ) -> CompanyRecord:
        self._register_tags(changes.tags)
        old = company.custom_id
        company.apply(changes, now)
        new = company.custom_id
        if old != new:
            if old is not None:
                del self.company_id_by_custom_id[old]
            if new is not None:
                self.company_id_by_custom_id[new] = company.id
        user_custom_id = changes.strings.get("user_custom_id")
        for user in self.users_where("custom_id", user_custom_id) if user_custom_id else []:
            self._link(company, user.id, now)
        return company
