"""How a sandbox misbehaves: the frozen knobs passed to ``create_app``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pipeline.sandbox.routing import ROUTES
from pipeline.sandbox.users import (
    UNKNOWN_ATTRIBUTE_MODES,
    USER_KEY_FIELDS,
    UnknownAttributes,
    UserKeyField,
)

FORCED_SYNTAX = "[METHOD ]ROUTE=STATUS[xN]"
FORCED_EXAMPLE = "POST /users/update_or_create/=503x180"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ROUTE_METHODS: Mapping[str, str] = MappingProxyType({route.name: route.method for route in ROUTES})
_STATUS = re.compile(r"(?P<status>[0-9]{3})(?:[xX](?P<times>[0-9]+))?")


@dataclass(frozen=True, slots=True)
class ForcedStatus:
    """Answer ``status`` to API requests matching ``route`` (and ``method``, when given).

    ``route`` is a route name (``"users-by-id"``) or a path prefix relative to ``/api/public``
    (``"/users-by-id/"``). With ``times`` only the first ``times`` matching requests of an app are
    forced, then requests are handled normally; ``None`` forces every matching request.

    >>> ForcedStatus("/events/", 503, method="POST", times=2)
    ForcedStatus(route='/events/', status=503, method='POST', times=2)
    >>> ForcedStatus("users-by-id", 401, method="POST")
    Traceback (most recent call last):
    ...
    ValueError: route users-by-id only answers GET, so POST users-by-id would never match
    """

    route: str
    status: int
    method: str | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        if not self.route.startswith("/") and self.route not in ROUTE_METHODS:
            names = ", ".join(sorted(ROUTE_METHODS))
            raise ValueError(
                f"unknown route {self.route!r}: give a route name ({names}) "
                "or a path prefix starting with '/', like /users/"
            )
        if self.route.startswith("/") and ("?" in self.route or "#" in self.route):
            raise ValueError(f"path prefix {self.route!r} must not have a query: it never matches")
        if not 200 <= self.status <= 599:
            raise ValueError(f"forced status for {self.route} must be 200..599, got {self.status}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"forced status count must be at least 1, got {self.times}")
        if self.method is None:
            return
        if self.method not in HTTP_METHODS:
            known = ", ".join(sorted(HTTP_METHODS))
            raise ValueError(f"unknown HTTP method {self.method!r}: use one of {known}")
        answers = ROUTE_METHODS.get(self.route)
        if answers is not None and answers != self.method:
            raise ValueError(
                f"route {self.route} only answers {answers}, "
                f"so {self.method} {self.route} would never match"
            )

    def matches(self, method: str, route_name: str | None, paths: tuple[str, ...]) -> bool:
        """Whether a request (its method, resolved route name and paths) is one of these.

        >>> rule = ForcedStatus("/users/", 500, method="GET")
        >>> rule.matches("GET", None, ("/users/12/",)), rule.matches("PUT", None, ("/users/12/",))
        (True, False)
        """
        if self.method is not None and method != self.method:
            return False
        if self.route.startswith("/"):
            return any(path.startswith(self.route) for path in paths)
        return self.route == route_name

    def __str__(self) -> str:
        method = f"{self.method} " if self.method else ""
        times = f"x{self.times}" if self.times is not None else ""
        return f"{method}{self.route}={self.status}{times}"


def parse_forced(spec: str, *, called: str = "forced rule") -> ForcedStatus:
    """A ``ForcedStatus`` from ``[METHOD ]ROUTE=STATUS[xN]`` (the ``--force`` syntax).

    A refusal names the rule by ``called``: the library's words by default, the option's
    (``called="--force"``) on a command line.

    >>> parse_forced("POST /users/update_or_create/=503x180")
    ForcedStatus(route='/users/update_or_create/', status=503, method='POST', times=180)
    >>> parse_forced("users-by-id=401")
    ForcedStatus(route='users-by-id', status=401, method=None, times=None)
    >>> parse_forced("/events/=5O3")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: bad forced rule '/events/=5O3': the status must be 3 digits, ...
    """
    where = f"bad {called} {spec!r}"
    target, equals, answer = spec.strip().rpartition("=")
    parts = target.split()
    if not equals or not parts or len(parts) > 2:
        raise ValueError(f"{where}: expected {FORCED_SYNTAX}, like {FORCED_EXAMPLE!r}")
    status = _STATUS.fullmatch(answer.strip())
    if status is None:
        raise ValueError(
            f"{where}: the status must be 3 digits, optionally followed by xN "
            "(the first N requests only), like 503 or 503x3"
        )
    method = parts[0].upper() if len(parts) == 2 else None
    times = status["times"]
    try:
        return ForcedStatus(
            route=parts[-1],
            status=int(status["status"]),
            method=method,
            times=None if times is None else int(times),
        )
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


@dataclass(frozen=True, slots=True)
class SandboxOptions:
    """Authentication, representation, latency and fault-injection settings of one sandbox app.

    Rates are probabilities in ``[0, 1]`` drawn per request from the app's seeded random source.

    >>> SandboxOptions(error_rate=0.5).error_rate
    0.5
    >>> SandboxOptions(drop_rate=2)
    Traceback (most recent call last):
    ...
    ValueError: drop_rate must be between 0 and 1, got 2
    """

    api_key: str | None = None
    """The only accepted token; ``None`` accepts any non-empty token. A missing or other token
    is answered 401 ``{"detail": "Invalid token."}``."""
    user_key_field: UserKeyField = "user_key"
    """The name of the cookie key in user objects: ``user_key`` (D-key table, RudderStack mocks)
    or ``key`` (every v2 docs example); ``GET /users/search/?key=`` finds users either way."""
    unknown_attributes: UnknownAttributes = "accept"
    """Keys of a user body that are no standard field: ``accept`` stores them as custom
    attributes, ``ignore`` drops them silently, ``reject`` answers 400 naming them."""
    latency_ms: float = 0
    """Delay added before every API request is answered."""
    error_rate: float = 0
    """Share of API requests answered with a random 500, 502, 503 or 504."""
    throttle_rate: float = 0
    """Share of API requests answered with 429 and ``Retry-After: 1``."""
    drop_rate: float = 0
    """Share of API requests whose connection is dropped before the handler runs."""
    lost_response_rate: float = 0
    """Share of non-GET API requests that are performed, then their connection is dropped."""
    rate_limit_rps: float | None = None
    """Token-bucket limit in requests per second (burst = max(1, rps)); ``None`` = unlimited."""
    rate_limit_per_key: bool = False
    """One bucket of ``rate_limit_rps`` per API key rather than one for all: a sandbox that
    accepts any key stands in for many User.com apps, each with its own limit."""
    forced_status: Mapping[str, int] = field(default_factory=dict)
    """Route name (``"users-by-id"``) or path prefix (``"/users-by-id/"``) -> forced status,
    for every request (any method) of that route."""
    forced: tuple[ForcedStatus, ...] = ()
    """Forced statuses, possibly for one method or the first N requests only (``parse_forced``).

    They come before ``forced_status``; the first rule, in order, that matches a request and
    has requests left answers it, so ``/events/=503x2`` then ``/events/=429x1`` gives 503, 503,
    429, then normal answers."""
    seed: int = 0
    """Seed of the app's single random source (user keys and fault draws)."""

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError(
                "api_key must not be empty: leave it out (None) to accept any non-empty token"
            )
        if self.user_key_field not in USER_KEY_FIELDS:
            raise ValueError(
                f"user_key_field must be one of {', '.join(USER_KEY_FIELDS)}, "
                f"got {self.user_key_field!r}"
            )
        if self.unknown_attributes not in UNKNOWN_ATTRIBUTE_MODES:
            raise ValueError(
                f"unknown_attributes must be one of {', '.join(UNKNOWN_ATTRIBUTE_MODES)}, "
                f"got {self.unknown_attributes!r}"
            )
        for name in ("error_rate", "throttle_rate", "drop_rate", "lost_response_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if not 0 <= self.latency_ms < math.inf:
            raise ValueError(f"latency_ms must be a finite number >= 0, got {self.latency_ms}")
        rps = self.rate_limit_rps
        if rps is not None and not 0 < rps < math.inf:
            raise ValueError(f"rate_limit_rps must be a finite number > 0, got {rps}")
        for key, status in self.forced_status.items():
            if not 200 <= status <= 599:
                raise ValueError(f"forced_status[{key!r}] is not an HTTP status: {status}")
        object.__setattr__(self, "forced_status", MappingProxyType(dict(self.forced_status)))
        object.__setattr__(self, "forced", tuple(self.forced))
