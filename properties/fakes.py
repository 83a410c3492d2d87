"""Fake User.com servers as `httpx.MockTransport`s that record what they were sent.

Each fake is built from plain data, so the same data always gives the same answers: a property
can run an item twice and compare what went over the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx
from hypothesis import strategies as st

from pipeline.testing.strategies import json_values

Outage = Literal["connect", "timeout", "protocol"]


@dataclass(frozen=True)
class Reply:
    status: int
    content: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


AnswerSpec = Reply | Outage

USER: dict[str, Any] = {"id": 4242, "user_key": "uk-4242", "custom_id": "cid-4242"}
COMPANY: dict[str, Any] = {"id": 77, "name": "Acme"}


@dataclass
class Recorder:
    """A MockTransport and everything it was asked, in order."""

    handler: Callable[[httpx.Request], httpx.Response]
    requests: list[httpx.Request] = field(default_factory=list)

    @property
    def transport(self) -> httpx.MockTransport:
        def record(request: httpx.Request) -> httpx.Response:
            request.read()
            self.requests.append(request)
            return self.handler(request)

        return httpx.MockTransport(record)

    def wire(self) -> list[tuple[str, str, list[tuple[str, str]], bytes]]:
        """What was sent: method, URL, headers, body."""
        return [(r.method, str(r.url), list(r.headers.items()), r.content) for r in self.requests]

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests if r.content]


def scripted(answers: tuple[AnswerSpec, ...]) -> Recorder:
    """Answers call i with answers[i % len(answers)] (a 404 when there are none)."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if not answers:
            return httpx.Response(404)
        answer = answers[(len(calls) - 1) % len(answers)]
        if answer == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        if answer == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if answer == "protocol":
            raise httpx.RemoteProtocolError("peer closed", request=request)
        return httpx.Response(answer.status, content=answer.content, headers=list(answer.headers))

    return Recorder(handler)


def user_com(*, user_found: bool = True, company_found: bool = True) -> Recorder:
    """A well-behaved User.com: every lookup finds (or not) the one user, writes succeed."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        query = parse_qs(request.url.query.decode())
        if request.method == "GET" and path.startswith("/api/public/users"):
            if not user_found:
                return httpx.Response(404, json={"detail": "Not found."})
            if "phone_number" in query:
                return httpx.Response(200, json={"results": [USER]})
            return httpx.Response(200, json=USER)
        if request.method == "GET" and path.startswith("/api/public/companies-by-id/"):
            if company_found:
                return httpx.Response(200, json=COMPANY)
            return httpx.Response(404, json={"detail": "Not found."})
        if request.method in ("POST", "PUT") and path.startswith("/api/public/companies/"):
            return httpx.Response(200, json=COMPANY)
        return httpx.Response(500, json={"detail": "unexpected request in the fake"})

    return Recorder(handler)


def echoing(
    status: int, preamble: str = "", encoded: Callable[[str], str] = lambda header: header
) -> Recorder:
    """A User.com (or a proxy before it) whose error message repeats the credentials sent,
    after `preamble` (a long one pushes the key past where a message may be cut short),
    `encoded` as a gateway may log them (base64, hex, upper case...)."""

    def handler(request: httpx.Request) -> httpx.Response:
        header = encoded(request.headers.get("authorization", ""))
        said = f"{preamble}Invalid token header: {header}"
        return httpx.Response(status, json={"detail": said})

    return Recorder(handler)


# --- strategies for answers -------------------------------------------------------------------

statuses = st.one_of(
    st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503]),
    st.integers(min_value=100, max_value=599),
)

_bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=24),
    json_values(max_leaves=8).map(lambda value: json.dumps(value).encode()),
    st.sampled_from(
        [
            USER,
            COMPANY,
            {"results": [USER]},
            {"results": []},
            {"results": [USER, USER]},
            {"results": "x"},
            {"id": None},
            {"id": ".."},
            {"detail": "Invalid token."},
            [USER],
        ]
    ).map(lambda value: json.dumps(value).encode()),
)

_headers = st.lists(
    st.one_of(
        st.tuples(
            st.just("Retry-After"), st.sampled_from(["1", "0", "-3", "2.5", "soon", "1e999"])
        ),
        st.tuples(st.just("Content-Type"), st.just("application/json")),
    ),
    max_size=2,
).map(tuple)

answer_specs: st.SearchStrategy[AnswerSpec] = st.one_of(
    st.builds(Reply, statuses, _bodies, _headers),
    st.sampled_from(["connect", "timeout", "protocol"]),
)
answer_scripts: st.SearchStrategy[tuple[AnswerSpec, ...]] = st.lists(
    answer_specs, min_size=1, max_size=5
).map(tuple)
