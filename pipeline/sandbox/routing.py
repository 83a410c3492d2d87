"""The API route table as data, and its matcher over percent-encoded paths."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal
from urllib.parse import unquote

Method = Literal["GET", "POST", "PUT"]


@dataclass(frozen=True, slots=True)
class Route:
    """A method, path segments (``{name}`` any segment, ``{name:int}`` digits) and a name."""

    method: Method
    segments: tuple[str, ...]
    name: str


ROUTES = (
    Route("GET", ("users", "search"), "users-search"),
    Route("POST", ("users", "update_or_create"), "users-update-or-create"),
    Route("POST", ("users",), "users-create"),
    Route("GET", ("users", "{id:int}"), "users-detail"),
    Route("PUT", ("users", "{id:int}"), "users-update"),
    Route("GET", ("users-by-id", "{custom_id}"), "users-by-id"),
    Route("PUT", ("users-by-id", "{custom_id}"), "users-by-id-update"),
    Route("POST", ("users-by-id", "{custom_id}", "events"), "users-by-id-events-create"),
    Route("POST", ("events",), "events-create"),
    Route("POST", ("site-views",), "site-views-create"),
    Route("POST", ("companies",), "companies-create"),
    Route("GET", ("companies", "{id:int}"), "companies-detail"),
    Route("PUT", ("companies", "{id:int}"), "companies-update"),
    Route("POST", ("companies", "{id:int}", "add_member"), "companies-add-member"),
    Route("GET", ("companies-by-id", "{custom_id}"), "companies-by-id"),
    Route("PUT", ("companies-by-id", "{custom_id}"), "companies-by-id-update"),
)


@dataclass(frozen=True, slots=True)
class Match:
    """A resolved path: the route for the method (None: 405) and the decoded parameters."""

    route: Route | None
    params: MappingProxyType[str, str]
    allowed: tuple[Method, ...]


def split_path(raw_path: str) -> tuple[str, ...] | None:
    """Decoded segments of ``/a/b%2Fc/``; None when a segment is empty.

    >>> split_path("/users-by-id/a%2Fb/")
    ('users-by-id', 'a/b')
    """
    parts = raw_path.strip("/").split("/")
    if not all(parts):
        return None
    return tuple(unquote(part) for part in parts)


def _bind(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, segments, strict=True):
        if not expected.startswith("{"):
            if expected != actual:
                return None
            continue
        name, _, kind = expected.strip("{}").partition(":")
        if kind == "int" and not (actual.isascii() and actual.isdigit()):
            return None
        params[name] = actual
    return params


def resolve(method: str, raw_path: str) -> Match | None:
    """The route for an API-relative, percent-encoded path; None when no route has that path.

    >>> resolve("PUT", "/users/12/").route.name
    'users-update'
    >>> resolve("DELETE", "/users/12/").allowed
    ('GET', 'PUT')
    """
    segments = split_path(raw_path)
    if segments is None:
        return None
    bound = [
        (route, params)
        for route in ROUTES
        if (params := _bind(route.segments, segments)) is not None
    ]
    if not bound:
        return None
    for route, params in bound:
        if route.method == method:
            return Match(route, MappingProxyType(params), ())
    return Match(None, MappingProxyType({}), tuple(route.method for route, _ in bound))
