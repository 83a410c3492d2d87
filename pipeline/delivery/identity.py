"""A run-scoped identity cache: lookups it can answer are never sent.

It learns users from lookup answers and from user writes, and companies from company
writes. It keeps only users it fully knows (an `id` and a `user_key`), so every flow gets
what it needs from a cached answer; an update_or_create answer of the real API holds only
`{created, id}` and so is not cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.core.answers import Answer, Reply
from pipeline.core.calls import Request
from pipeline.core.types import JSON, JSONObject, as_text, is_present
from pipeline.delivery.strategy import UPSERT_PATH

CacheKey = tuple[str, str]


def _lookup_key(request: Request) -> CacheKey | None:
    if request.method != "GET":
        return None
    match request.path, request.query:
        case ("users-by-id", custom_id), ():
            return ("custom_id", custom_id)
        case ("users", "search"), (("key", key),):
            return ("user_key", key)
        case ("users", "search"), (("email", email),):
            return ("email", email)
        case ("companies-by-id", company), ():
            return ("company", company)
    return None


def _body_object(answer: Answer) -> JSONObject | None:
    if isinstance(answer, Reply) and 200 <= answer.status < 300:
        body = answer.body
        if isinstance(body, Mapping) and is_present(body.get("id")):
            return body
    return None


def _text(value: JSON) -> str | None:
    return as_text(value) if is_present(value) else None


@dataclass(slots=True)
class IdentityCache:
    entries: dict[CacheKey, JSONObject] = field(default_factory=dict)

    def answer(self, request: Request) -> Reply | None:
        key = _lookup_key(request)
        known = self.entries.get(key) if key else None
        return Reply(200, known) if known is not None else None

    def _remember_user(self, user: JSONObject, *extra: CacheKey) -> None:
        if not (is_present(user.get("id")) and is_present(user.get("user_key"))):
            return
        keys = [
            ("custom_id", _text(user.get("custom_id"))),
            ("user_key", _text(user.get("user_key"))),
        ]
        for kind, value in [*keys, *extra]:
            if value is not None:
                self.entries[(kind, value)] = user

    def learn(self, request: Request, answer: Answer) -> None:
        """Remember what a lookup or a write answered, when it names a user or company."""
        found = _body_object(answer)
        if found is None or (
            isinstance(answer, Reply) and answer.status != 200 and request.method == "GET"
        ):
            return
        key = _lookup_key(request)
        if key is not None and key[0] == "company":
            self.entries[key] = found
        elif key is not None:
            self._remember_user(found, key)
        elif request.path[:1] == ("companies",) and len(request.path) <= 2:
            company = _text(found.get("custom_id"))
            if company is not None:
                self.entries[("company", company)] = found
        elif request.path[:1] == ("users",) or request.path == UPSERT_PATH:
            body = request.body or {}
            merged = {**found}
            for name in ("custom_id", "email"):
                if name not in merged and name in body:
                    merged[name] = body[name]
            self._remember_user(merged)
