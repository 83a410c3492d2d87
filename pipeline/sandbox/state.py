"""The in-memory User.com account behind one sandbox app, and the operations on it."""

from __future__ import annotations

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
from pipeline.sandbox.users import UserChanges, UserRecord, parse_user_body, render_user

Clock = Callable[[], datetime]
KEY_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 12


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
    """Users, companies, events and site views of one app; every id is auto-incremented."""

    rng: random.Random
    clock: Clock = utc_now
    users: dict[int, UserRecord] = field(default_factory=dict)
    companies: dict[int, CompanyRecord] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    site_views: list[dict[str, Any]] = field(default_factory=list)
    event_names: set[str] = field(default_factory=set)
    tag_ids: dict[str, int] = field(default_factory=dict)
    request_count: int = 0
    last_event_id: int = 0

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
        """Users whose ``user_key`` or standard string field equals ``value``, by id."""
        if key == "user_key":
            return [user for user in self.users.values() if user.user_key == value]
        return [user for user in self.users.values() if user.strings.get(key) == value]

    def create_user(self, body: Body) -> UserRecord:
        """Store a new user; a taken ``custom_id`` is a 400."""
        changes = parse_user_body(body)
        self._check_user_custom_id(changes, owner=None)
        now = self.now()
        user = UserRecord(len(self.users) + 1, self._new_user_key(), now, now)
        self.users[user.id] = user
        self._apply_user(user, changes, now)
        return user

    def update_user(self, user: UserRecord, body: Body) -> UserRecord:
        """Apply a partial update; moving to another user's ``custom_id`` is a 400."""
        changes = parse_user_body(body)
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

    def show_user(self, user: UserRecord) -> dict[str, Any]:
        """The API representation of a user, with the companies it belongs to."""
        companies = [
            {"id": company.id, "name": company.strings["name"], "member_since": since}
            for company in self.companies.values()
            if (since := company.member_since.get(user.id)) is not None
        ]
        return render_user(user, self.tag_ids, companies)

    # events and site views

    def create_event(self, body: Body) -> dict[str, Any]:
        """Record an event of an existing user; ``created`` = first event of that name."""
        user_id = as_int("user_id", required(body, "user_id"))
        if user_id not in self.users:
            raise invalid("user_id", f'Invalid pk "{user_id}" - object does not exist.')
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
        if not self.users_where("user_key", client_user):
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
        """Companies with this custom id (at most one), by id."""
        return [company for company in self.companies.values() if company.custom_id == custom_id]

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
        company.add_employee(found[0].id, self.now())
        return {"id": company.id, "user_id": found[0].id, "added": True}

    def show_company(self, company: CompanyRecord) -> dict[str, Any]:
        """The API representation of a company."""
        return render_company(company, self.tag_ids)

    # whole state

    def snapshot(self) -> dict[str, Any]:
        """Everything stored, as ``GET /__sandbox__/state`` shows it."""
        return {
            "users": [self.show_user(user) for user in self.users.values()],
            "companies": [self.show_company(company) for company in self.companies.values()],
            "events": [dict(event) for event in self.events],
            "site_views": [dict(view) for view in self.site_views],
            "request_count": self.request_count,
        }

    # helpers

    def _new_user_key(self) -> str:
        taken = {user.user_key for user in self.users.values()}
        while (key := "".join(self.rng.choices(KEY_ALPHABET, k=KEY_LENGTH))) in taken:
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
        user.apply(changes, now)
        if changes.company_custom_id is not None:
            for company in self.companies_where(changes.company_custom_id):
                company.add_employee(user.id, now)

    def _apply_company(
        self, company: CompanyRecord, changes: CompanyChanges, now: str
    ) -> CompanyRecord:
        self._register_tags(changes.tags)
        company.apply(changes, now)
        user_custom_id = changes.strings.get("user_custom_id")
        for user in self.users_where("custom_id", user_custom_id) if user_custom_id else []:
            company.add_employee(user.id, now)
        return company
