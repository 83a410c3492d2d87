"""Who may use the console (DELIVERY §8): the token, sessions, CSRF, slowed wrong tries.

- Signing in with the token starts a session: a random id in an HttpOnly, SameSite=Strict
  cookie (the token itself is never stored in the browser), and a CSRF token of its own that
  every state-changing request made with the cookie must carry (form field `csrf` or header
  `X-CSRF-Token`).
- `Authorization: Bearer TOKEN` works everywhere and needs no CSRF token: a browser never
  sends it by itself, so a foreign page cannot make one.
- 5 wrong tokens from one address within a minute: that address gets 429 for a minute.

The clock is passed in (tests move it); sessions live in memory, so a restart signs
everyone out.
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

BearerTry = Literal["absent", "right", "wrong", "blocked"]

COOKIE: Final = "usercom_console"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"
WRONG_TRIES: Final = 5
WRONG_WINDOW_S: Final = 60.0
BLOCKED_S: Final = 60.0
SESSION_S: Final = 12 * 3600.0
MAX_SESSIONS: Final = 10_000
MAX_TRACKED: Final = 10_000  # addresses whose wrong tries or block are remembered


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    expires: float


@dataclass(slots=True)
class Gate:
    """The console token and what it let in."""

    token: str = field(repr=False)
    clock: Callable[[], float]
    sessions: dict[str, Session] = field(default_factory=dict, repr=False)
    wrong: dict[str, deque[float]] = field(default_factory=dict)
    blocked_until: dict[str, float] = field(default_factory=dict)

    def is_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def bearer(self, headers: Mapping[str, str]) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.is_token(given.strip())

    def bearer_try(self, address: str, headers: Mapping[str, str]) -> BearerTry:
        """A Bearer token is a try like a sign-in: a wrong one counts, and a blocked address
        is refused whatever it sends (else the API would be the way around the slowing)."""
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return "absent"
        if self.retry_after(address) is not None:
            return "blocked"
        if self.is_token(given.strip()):
            return "right"
        self._wrong_try(address)
        return "wrong"

    def session(self, cookies: Mapping[str, str]) -> Session | None:
        sid = cookies.get(COOKIE)
        if not sid:
            return None
        found = self.sessions.get(sid)
        if found is None or found.expires <= self.clock():
            self.sessions.pop(sid, None)
            return None
        return found

    def retry_after(self, address: str) -> int | None:
        """Seconds this address must wait before it may try a token again, if blocked."""
        until = self.blocked_until.get(address)
        if until is None:
            return None
        left = until - self.clock()
        if left <= 0:
            del self.blocked_until[address]
            return None
        return max(1, int(left + 0.999))

    def sign_in(self, address: str, given: str) -> str | None:
        """A new session id for the right token; None (and one wrong try counted) otherwise."""
        if not self.is_token(given):
            self._wrong_try(address)
            return None
        self._forget_expired()
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = Session(secrets.token_urlsafe(32), self.clock() + SESSION_S)
        return sid

    def _wrong_try(self, address: str) -> None:
        """Count a wrong token; the 5th within a minute blocks the address for a minute."""
        now = self.clock()
        tries = self.wrong.setdefault(address, deque())
        tries.append(now)
        while tries and tries[0] <= now - WRONG_WINDOW_S:
            tries.popleft()
        if len(tries) >= WRONG_TRIES:
            self.blocked_until[address] = now + BLOCKED_S
            tries.clear()
        self._forget_old_tries(now)

    def _forget_old_tries(self, now: float) -> None:
        """Keep what is remembered of wrong tries bounded, whatever number of addresses they
        come from: past MAX_TRACKED, tries out of their minute and ended blocks go, then
        (a flood within one minute) the longest-remembered, down to three quarters."""
        keep = MAX_TRACKED * 3 // 4
        if len(self.wrong) > MAX_TRACKED:
            for old in [
                a
                for a, tries in self.wrong.items()
                if not tries or tries[-1] <= now - WRONG_WINDOW_S
            ]:
                del self.wrong[old]
            while len(self.wrong) > keep:
                del self.wrong[next(iter(self.wrong))]
        if len(self.blocked_until) > MAX_TRACKED:
            for old in [a for a, until in self.blocked_until.items() if until <= now]:
                del self.blocked_until[old]
            while len(self.blocked_until) > keep:
                del self.blocked_until[next(iter(self.blocked_until))]

    def sign_out(self, cookies: Mapping[str, str]) -> None:
        self.sessions.pop(cookies.get(COOKIE, ""), None)

    def _forget_expired(self) -> None:
        now = self.clock()
        for sid in [sid for sid, s in self.sessions.items() if s.expires <= now]:
            del self.sessions[sid]
        while len(self.sessions) >= MAX_SESSIONS:  # the oldest go first (dicts keep order)
            del self.sessions[next(iter(self.sessions))]


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())
