"""Requests to User.com as values, and how they render to URLs, headers and bodies (SPEC §9).

A request names its endpoint (pipeline.core.endpoints) and its subject; method, path and
query follow from the catalogue. Identifiers stay raw until `url` encodes each as one segment.

>>> req = call("user_by_email", "a+b@x.io")
>>> req.url("https://acme.user.com/api/public")
'https://acme.user.com/api/public/users/search/?email=a%2Bb%40x.io'
>>> call("user_by_id", "a/b").url("https://acme.user.com/api/public")
'https://acme.user.com/api/public/users-by-id/a%2Fb/'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import quote, urlencode

from pipeline.core.endpoints import CATALOGUE, SUBJECT, Endpoint, EndpointName, Method
from pipeline.core.types import JSON, JSONObject, thaw


def clean_body(fields: Mapping[str, JSON]) -> JSONObject:
    """Top-level nulls are dropped from every body (SPEC §9)."""
    return MappingProxyType({k: v for k, v in fields.items() if v is not None})


# httpx refuses a URL over 65,536 characters. A config's base URL takes under 100 (its
# subdomain is one DNS label), an origin given instead at most ORIGIN_MAX (plus /api/public),
# the catalogue's fixed parts under 40: a subject within this bound once encoded keeps every
# URL under the limit.
SUBJECT_ENCODED_MAX = 64_000
ORIGIN_MAX = 1_024
# Percent-encoding turns one character into at most 12 (four UTF-8 bytes, `%XX` each).
_WIDEST_ENCODING = 12


def _segment(identifier: str) -> str:
    """One path segment. `.` and `..` are encoded too, or URL normalisation would drop them.

    >>> _segment("a/b"), _segment(".."), _segment("a.b")
    ('a%2Fb', '%2E%2E', 'a.b')
    """
    if identifier in (".", ".."):
        return identifier.replace(".", "%2E")
    # surrogatepass: a lone surrogate is valid JSON text; it is sent, not a crash.
    return quote(identifier, safe="", errors="surrogatepass")


@dataclass(frozen=True, slots=True)
class Request:
    """One User.com call: which endpoint, about what, with which body."""

    endpoint: Endpoint
    subject: str | None = None
    body: JSONObject | None = None

    def __post_init__(self) -> None:
        if self.endpoint.needs_subject != (self.subject is not None):
            raise ValueError(f"{self.endpoint.name}: subject is {self.subject!r}")

    @property
    def name(self) -> EndpointName:
        return self.endpoint.name

    @property
    def method(self) -> Method:
        return self.endpoint.method

    @property
    def path(self) -> tuple[str, ...]:
        subject = self.subject or ""
        return tuple(subject if part == SUBJECT else part for part in self.endpoint.path)

    @property
    def query(self) -> tuple[tuple[str, str], ...]:
        key = self.endpoint.query
        return ((key, self.subject or ""),) if key is not None else ()

    def subject_too_long(self) -> tuple[int, int] | None:
        """(characters, encoded length) of a subject too long to send in a URL, else None."""
        subject = self.subject
        if subject is None or len(subject) * _WIDEST_ENCODING <= SUBJECT_ENCODED_MAX:
            return None  # fits however it encodes: no need to encode it here
        encoded = len(quote(subject, safe="", errors="surrogatepass"))
        return (len(subject), encoded) if encoded > SUBJECT_ENCODED_MAX else None

    def url(self, base: str) -> str:
        path, query = self.encoded()
        return f"{base}{path}" if query is None else f"{base}{path}?{query}"

    def encoded(self) -> tuple[str, str | None]:
        """The path (from the base URL on) and the query string, each part encoded."""
        subject = self.subject or ""
        # The catalogue's own parts need no encoding (Endpoint checks that): only the subject.
        path = "".join(
            f"/{_segment(subject)}" if part == SUBJECT else f"/{part}"
            for part in self.endpoint.path
        )
        path += "/"
        if not self.query:
            return path, None
        return path, urlencode(self.query, quote_via=quote, safe="", errors="surrogatepass")

    def readable_path(self) -> str:
        """The path as a person reads it, unencoded (for plans and reprs)."""
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return "/" + "/".join(self.path) + "/" + (f"?{query}" if query else "")

    def __repr__(self) -> str:
        body = "" if self.body is None else f" {thaw(self.body)!r}"
        return f"<Request {self.method} {self.readable_path()}{body}>"


def call(name: EndpointName, subject: str | None = None, body: JSONObject | None = None) -> Request:
    """The request to the named endpoint about `subject`."""
    return Request(CATALOGUE[name], subject, body)


def headers(api_key: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Authorization": f"Token {api_key}",
        "Accept": "*/*;version=2",
    }
