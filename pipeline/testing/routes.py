"""The route-override table of ``FakeUserCom``: fixed answers for the odd cases.

The fake answers as User.com does (the sandbox's handlers). A test that needs User.com to say
something it would not (a 500 on one route, a body of the wrong shape, a lost connection, an
answer that never comes) names the route and the answer::

    FakeUserCom(routes={
        "GET /users-by-id/u1/": Reply(200, {"id": 7, "user_key": "k7"}),
        "POST /users/*/events/": Raise(httpx.ReadTimeout),
        "GET /users/search/?email=a@b.co": Reply(500, text="<html>oops</html>"),
    })

A key is ``"METHOD /path/"`` relative to ``/api/public``, percent-decoded, with or without the
decoded query; or an fnmatch pattern of that (``"GET /users-by-id/*"``, ``"* *"``). The exact
request with its query is looked up first, then without it, then the patterns in the table's
order. A value is a ``Reply``, a ``Raise``, or a function of the ``Received`` request that
returns one, or None for "answer as User.com would" (a fault that comes and goes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from pipeline.testing.fake import Received

__all__ = ["Raise", "Reply", "Route", "Routes", "answer_from"]


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: a status with a JSON body (``json``), a text body, or no body; ``delay``
    seconds before it comes (a slow or a hanging User.com: the client's timeout decides)."""

    status: int = 200
    json: Any = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def response(self, request: httpx.Request) -> httpx.Response:
        headers = dict(self.headers)
        if self.text is not None:
            return httpx.Response(self.status, text=self.text, headers=headers, request=request)
        if self.json is None:
            return httpx.Response(self.status, headers=headers, request=request)
        return httpx.Response(self.status, json=self.json, headers=headers, request=request)


@dataclass(frozen=True, slots=True)
class Raise:
    """No answer: the transport raises this httpx error (a refused or lost connection, a
    timeout), after ``delay`` seconds."""

    error: type[httpx.TransportError]
    message: str = "simulated failure"
    delay: float = 0.0

    def raised(self, request: httpx.Request) -> httpx.TransportError:
        return self.error(self.message, request=request)


Fixed = Reply | Raise
Route = Fixed | Callable[["Received"], Fixed | None]
Routes = Mapping[str, Route]


def answer_from(routes: Routes, seen: Received) -> Fixed | None:
    """The table's answer to this request; None when no route names it (or its function
    passes it on): the fake answers as User.com would."""
    route = _route_for(routes, seen)
    if route is None or isinstance(route, Reply | Raise):
        return route
    return route(seen)


def _route_for(routes: Routes, seen: Received) -> Route | None:
    for key in (seen.call, f"{seen.method} {seen.path}"):
        if key in routes:
            return routes[key]
    for pattern, route in routes.items():
        if fnmatchcase(seen.call, pattern):
            return route
    return None
