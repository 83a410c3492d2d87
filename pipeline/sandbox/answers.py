"""``Answer``: what the sandbox replies to one request, before any web framework renders it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Answer:
    """A status, headers and a JSON body (``None``: an empty body).

    ``dropped``: the connection is closed before any answer (the request did nothing).
    ``lost``: the request was performed, then its connection closed before the answer.
    Either way a client sees a transport error, never ``status`` or ``body``.

    >>> Answer(429, {"detail": "Request was throttled."}, {"Retry-After": "1"}).content()
    b'{"detail":"Request was throttled."}'
    """

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    dropped: bool = False
    lost: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    @property
    def cut(self) -> bool:
        """Whether the client gets no answer at all (a dropped or lost response)."""
        return self.dropped or self.lost

    def content(self) -> bytes:
        """The body as sent: compact UTF-8 JSON (Starlette's ``JSONResponse`` bytes), or empty."""
        return b"" if self.body is None else json_bytes(self.body)


def json_bytes(value: Any) -> bytes:
    """Compact JSON, non-ASCII kept as UTF-8, as Starlette's ``JSONResponse`` renders it, except
    that a lone surrogate a client sent (as a ``\\ud83d`` escape) is written back as that escape
    instead of failing the answer.

    >>> json_bytes({"name": "Zoë", "n": [1, 2]})
    b'{"name":"Zo\\xc3\\xab","n":[1,2]}'
    >>> json_bytes({"name": "cut \\ud83d"})
    b'{"name":"cut \\\\ud83d"}'
    """
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8", errors="backslashreplace")


DROPPED = Answer(200, dropped=True)
"""A connection dropped before the request is handled."""
