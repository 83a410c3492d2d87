"""Injected failures: a token-bucket rate limit, forced statuses, random 429/5xx, drops.

Pure decisions, no web framework: each fault is an ``Answer`` (a *drop* is ``Answer.dropped``,
a lost response ``Answer.lost``). How a drop reaches a client is the server's business: the
Starlette app starts a response and never sends its body (httpx then raises
``RemoteProtocolError``), ``FakeUserCom`` raises ``httpx.RemoteProtocolError`` itself. Latency
is the server's too (an ``asyncio.sleep`` in the app, a sleep in the fake).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pipeline.sandbox.answers import DROPPED, NO_BODY_STATUSES, Answer
from pipeline.sandbox.options import SandboxOptions

DETAILS: Mapping[int, str] = MappingProxyType(
    {
        401: "Invalid token.",
        403: "You do not have permission to perform this action.",
        404: "Not found.",
        429: "Request was throttled.",
        500: "Internal server error.",
        502: "Bad gateway.",
        503: "Service unavailable.",
        504: "Gateway timeout.",
    }
)
SERVER_ERRORS = (500, 502, 503, 504)
"""The 5xx an ``error_rate`` draw answers: 500, 502 and 504 are User.com's documented codes
(usercom-api.md §9, apidocs.user.com http-response-codes, DOC); 503 is kept as INFER (any
proxy or load balancer in front of an API may answer it)."""


def status_answer(status: int, retry_after: int = 1, location: str = "/") -> Answer:
    """A DRF-style ``{"detail": ...}`` answer for any status (401, 429 and 3xx with their headers).

    A 3xx other than 304 carries ``Location: location``; 204 and 304 have no body.

    >>> status_answer(429)
    Answer(status=429, body={'detail': 'Request was throttled.'}, \
headers=mappingproxy({'Retry-After': '1'}), dropped=False, lost=False)
    >>> status_answer(302, location="/api/public/events/").headers["Location"]
    '/api/public/events/'
    """
    if status in NO_BODY_STATUSES:
        return Answer(status)
    headers = {"WWW-Authenticate": "Token"} if status == 401 else {}
    if status == 429:
        headers["Retry-After"] = str(retry_after)
    if 300 <= status <= 399:
        headers["Location"] = location
    detail = DETAILS.get(status, f"Forced status {status}.")
    return Answer(status, {"detail": detail}, headers)


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved; each request takes one.

    >>> clock = iter([0.0, 0.0, 0.5]).__next__
    >>> bucket = TokenBucket(rate=1.0, capacity=1.0, monotonic=clock)
    >>> bucket.take(), bucket.take()
    (0.0, 0.5)
    """

    rate: float
    capacity: float
    monotonic: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.capacity
        self.stamp = self.monotonic()

    def take(self) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is available."""
        now = self.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(slots=True)
class Faults:
    """The failure plan of one app, drawing every chance from the app's single random source."""

    options: SandboxOptions
    rng: random.Random
    bucket: TokenBucket | None = None
    forced_left: list[int | None] = field(default_factory=list)
    """Requests each rule of ``options.forced`` may still force (``None``: unlimited)."""
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    """With ``options.rate_limit_per_key``: each API key's bucket, made on its first request."""

    @classmethod
    def build(cls, options: SandboxOptions, rng: random.Random) -> Faults:
        """Faults for these options, with a token bucket when a rate limit is set."""
        rps = options.rate_limit_rps
        bucket = None if rps is None else TokenBucket(rate=rps, capacity=max(1.0, rps))
        return cls(options, rng, bucket, [rule.times for rule in options.forced])

    def before_handler(
        self,
        method: str,
        route_name: str | None,
        paths: tuple[str, ...],
        location: str = "/",
        key: str = "",
    ) -> Answer | None:
        """Rate limit, then forced status, then random throttle / 5xx / drop; None = go on.

        ``paths`` are the request's path (API-relative first); a forced 3xx points at
        ``location``; ``key`` is the request's API key (its bucket, when each key has one).
        """
        bucket = self._bucket_of(key)
        wait = bucket.take() if bucket is not None else 0.0
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            detail = f"Request was throttled. Expected available in {seconds} seconds."
            headers = {"Retry-After": str(seconds)}
            return Answer(429, {"detail": detail}, headers)
        forced = self.take_forced(method, route_name, paths)
        if forced is not None:
            return status_answer(forced, location=location)
        if self._chance(self.options.throttle_rate):
            return status_answer(429)
        if self._chance(self.options.error_rate):
            return status_answer(self.rng.choice(SERVER_ERRORS))
        if self._chance(self.options.drop_rate):
            return DROPPED
        return None

    def _bucket_of(self, key: str) -> TokenBucket | None:
        if self.bucket is None or not self.options.rate_limit_per_key:
            return self.bucket
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.bucket.rate, self.bucket.capacity)
        return bucket

    def lose_response(self, method: str) -> bool:
        """Whether to drop the connection after a write was performed."""
        return method != "GET" and self._chance(self.options.lost_response_rate)

    def take_forced(
        self, method: str, route_name: str | None, paths: tuple[str, ...]
    ) -> int | None:
        """The status forced on this request, counting it against a limited rule.

        The first rule of ``options.forced`` that matches and has requests left wins; else
        ``options.forced_status`` decides.
        """
        for index, rule in enumerate(self.options.forced):
            left = self.forced_left[index]
            if (left is None or left > 0) and rule.matches(method, route_name, paths):
                if left is not None:
                    self.forced_left[index] = left - 1
                return rule.status
        return self.forced_status(route_name, paths)

    def forced_status(self, route_name: str | None, paths: tuple[str, ...]) -> int | None:
        """The status forced by route name, else by the longest matching path prefix."""
        forced = self.options.forced_status
        if route_name is not None and route_name in forced:
            return forced[route_name]
        prefixes = [
            key
            for key in forced
            if key.startswith("/") and any(path.startswith(key) for path in paths)
        ]
        return forced[max(prefixes, key=len)] if prefixes else None

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate
