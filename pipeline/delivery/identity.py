"""A run-scoped identity cache: lookups it can answer are never sent.

It learns users from lookup answers and from user writes, and companies from company
lookups and writes, by the endpoint each request names. It keeps only users it fully knows
(an `id` and a user key), so every flow gets what it needs from a cached answer; an
update_or_create answer of the real API holds only `{created, id}` and so is not cached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pipeline.core.answers import Answer, Reply
from pipeline.core.calls import Request
from pipeline.core.endpoints import EndpointName
from pipeline.core.types import JSON, JSONObject, as_text, is_present

# What a cached entry is known by: ("custom_id" | "user_key" | "email" | "company", value).
CacheKey = tuple[str, str]

# The lookups the cache answers, and what their subject is.
_LOOKUPS: Mapping[EndpointName, str] = MappingProxyType(
    {
        "user_by_id": "custom_id",
        "user_by_key": "user_key",
        "user_by_email": "email",
        "company_by_id": "company",
    }
)
_USER_WRITES: frozenset[EndpointName] = frozenset({"create_user", "update_user", "upsert_user"})
_COMPANY_WRITES: frozenset[EndpointName] = frozenset({"create_company", "update_company"})


def _lookup_key(request: Request) -> CacheKey | None:
    kind = _LOOKUPS.get(request.name)
    return (kind, request.subject) if kind is not None and request.subject is not None else None


def _body_object(answer: Answer) -> JSONObject | None:
    if isinstance(answer, Reply) and 200 <= answer.status < 300:
        body = answer.body
        if isinstance(body, Mapping) and is_present(body.get("id")):
            return body
    return None


def _text(value: JSON) -> str | None:
    return as_text(value) if is_present(value) else None


# What flows read from a cached user or company; the rest of User.com's answer (often a few
# kilobytes of attributes) is not kept, so a bounded cache stays small.
_KEPT = ("id", "user_key", "key", "custom_id")
MAX_ENTRIES = 50_000


def _compact(found: JSONObject) -> JSONObject:
    return MappingProxyType({name: found[name] for name in _KEPT if name in found})


def _user_key(user: JSONObject) -> JSON:
    key = user.get("user_key")
    return key if key is not None else user.get("key")


@dataclass(slots=True)
class IdentityCache:
    """Least recently used entries are forgotten beyond `max_entries` (a forgotten user is
    looked up again: it costs a call, never correctness)."""

    max_entries: int = MAX_ENTRIES
    entries: OrderedDict[CacheKey, JSONObject] = field(default_factory=OrderedDict)

    def answer(self, request: Request) -> Reply | None:
        key = _lookup_key(request)
        if key is None and request.name == "update_company" and request.subject is not None:
            return self._same_write(request)
        known = self.entries.get(key) if key else None
        if known is None or key is None:
            return None
        self.entries.move_to_end(key)
        return Reply(200, known)

    def _same_write(self, request: Request) -> Reply | None:
        """A company update with exactly the body this run last wrote to that company is
        not sent again (group events of many users often carry the same company traits)."""
        key = ("written", request.subject or "")
        written = self.entries.get(key)
        if written is None or written.get("body") != request.body:
            return None
        self.entries.move_to_end(key)
        answer = written.get("answer")
        return Reply(200, answer) if isinstance(answer, Mapping) else None

    def _put(self, key: CacheKey, found: JSONObject) -> None:
        self._put_raw(key, _compact(found))

    def _put_raw(self, key: CacheKey, value: JSONObject) -> None:
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def _remember_user(self, user: JSONObject, *extra: CacheKey) -> None:
        if not (is_present(user.get("id")) and is_present(_user_key(user))):
            return
        keys = [
            ("custom_id", _text(user.get("custom_id"))),
            ("user_key", _text(_user_key(user))),
        ]
        for kind, value in [*keys, *extra]:
            if value is not None:
                self._put((kind, value), user)

    def learn(self, request: Request, answer: Answer) -> None:
        """Remember what a lookup or a write answered, when it names a user or company."""
        found = _body_object(answer)
        if found is None:
            return
        key = _lookup_key(request)
        if key is not None:
            if isinstance(answer, Reply) and answer.status != 200:
                return
            if key[0] == "company":
                self._put(key, found)
            else:
                self._remember_user(found, key)
        elif request.name in _COMPANY_WRITES:
            company = _text(found.get("custom_id"))
            if company is not None:
                self._put(("company", company), found)
            written_id = _text(found.get("id"))
            if written_id is not None and request.body is not None:
                body = request.body
                self._put_raw(
                    ("written", written_id),
                    MappingProxyType({"body": body, "answer": _compact(found)}),
                )
        elif request.name in _USER_WRITES:
            body = request.body or {}
            merged = {**found}
            for name in ("custom_id", "email"):
                if name not in merged and name in body:
                    merged[name] = body[name]
            self._remember_user(merged)
