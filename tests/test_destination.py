"""`pipeline.Destination` (issue 9): one parsed config, one pool, thread-safe, typed faults.

The connection tests count TCP connections at a real loopback HTTP/1.1 server.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from e2e_helpers import texts
from helpers import KEY

from pipeline import ConfigError, Destination, Outcome, Plan, RunFault, compat
from pipeline.shared_client import SHARED

CONFIG = {"apiKey": KEY, "appSubdomain": "acme"}
USER = {"id": 7, "user_key": "abcdefghijkl", "custom_id": "u1"}


@dataclass
class Counts:
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def handler_for(
    counts: Counts, status_for_writes: int = 200, missing_event_route: bool = False
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with counts.lock:
                counts.connections += 1

        def log_message(self, *args: Any) -> None:
            return

        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with counts.lock:
                counts.requests.append(f"GET {self.path}")
            if self.headers.get("Authorization") != f"Token {KEY}":
                self._answer(401, {"detail": "Invalid token."})
            elif self.path.startswith("/api/public/users-by-id/"):
                self._answer(200, USER)
            else:
                self._answer(404, {"detail": "Not found."})

        def _write(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            with counts.lock:
                counts.requests.append(f"{self.command} {self.path}")
            if self.headers.get("Authorization") != f"Token {KEY}":
                self._answer(401, {"detail": "Invalid token."})
            elif missing_event_route and self.path.endswith("/events/") and "by-id" in self.path:
                self._answer(404, {"detail": "Not found."})
            else:
                self._answer(status_for_writes, {"id": 11, "created": True})

        do_POST = _write
        do_PUT = _write

    return Handler


@contextmanager
def user_com(
    status_for_writes: int = 200, missing_event_route: bool = False
) -> Iterator[tuple[str, Counts]]:
    counts = Counts()
    handler = handler_for(counts, status_for_writes, missing_event_route)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counts
    finally:
        server.shutdown()
        server.server_close()


IDENTIFY = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.co"}}
TRACK = {"type": "track", "userId": "u1", "event": "Paid", "properties": {"v": 1}}


def test_a_bad_config_raises_one_typed_error_at_construction() -> None:
    with pytest.raises(ConfigError) as raised:
        Destination({"apiKey": KEY})
    assert raised.value.error.kind == "configuration"
    assert "App Subdomain is required" in str(raised.value)
    assert KEY not in str(raised.value)


def test_config_may_be_given_bare_or_wrapped_and_its_repr_hides_the_key() -> None:
    for config in (CONFIG, {"Config": CONFIG}):
        dest = Destination(config)
        assert dest.config.subdomain == "acme"
        assert KEY not in repr(dest)
        assert KEY not in dest._repr_html_()


def test_process_reuses_one_connection_and_keeps_real_urls() -> None:
    with user_com() as (url, counts), Destination(CONFIG, base_url=url) as dest:
        answers = [dest.process(TRACK) for _ in range(50)]
    assert counts.connections == 1
    assert len(counts.requests) == 50
    assert {a["output"]["endpoint"] for a in answers} == {
        "https://acme.user.com/api/public/events/"
    }
    assert all(a["statusCode"] == 200 for a in answers)


def test_module_level_functions_share_one_lazily_built_client() -> None:
    with ThreadPoolExecutor(16) as pool:
        clients = set(pool.map(lambda _: id(SHARED.sync()), range(64)))
    assert len(clients) == 1
    assert compat._via(None) is SHARED.sync()
    fake = httpx.MockTransport(lambda request: httpx.Response(404))
    assert compat._via(fake) is fake


def test_process_is_thread_safe_from_a_pool() -> None:
    with (
        user_com() as (url, counts),
        Destination(CONFIG, base_url=url) as dest,
        ThreadPoolExecutor(8) as pool,
    ):
        answers = list(pool.map(lambda n: dest.process({**TRACK, "event": f"E{n}"}), range(200)))
    assert [a["output"]["body"]["JSON"]["name"] for a in answers] == [f"E{n}" for n in range(200)]
    assert counts.connections <= 8
    assert len(counts.requests) == 200


def test_aprocess_and_the_async_context_manager() -> None:
    async def run(url: str) -> list[dict[str, Any]]:
        async with Destination(CONFIG, base_url=url) as dest:
            return list(await asyncio.gather(*(dest.aprocess(TRACK) for _ in range(10))))

    with user_com() as (url, counts):
        answers = asyncio.run(run(url))
    assert all(a["statusCode"] == 200 for a in answers)
    assert len(counts.requests) == 10


def test_plan_is_pure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError("plan made a request")

    dest = Destination(CONFIG, transport=httpx.MockTransport(refuse))
    shown = dest.plan(IDENTIFY)
    assert isinstance(shown, Plan)
    assert "GET /users-by-id/u1/" in str(shown)
    assert "<pre>" in shown._repr_html_()


def test_deliver_sends_the_final_request_and_returns_its_outcome() -> None:
    with user_com() as (url, counts), Destination(CONFIG, base_url=url) as dest:
        identify = dest.deliver(IDENTIFY)
        track = dest.deliver(TRACK)
        invalid = dest.deliver({"type": "track", "userId": "u1"})
    assert isinstance(identify, Outcome)
    assert identify.status == "delivered"
    assert texts(identify) == (
        "POST https://acme.user.com/api/public/users/update_or_create/ -> 200",
    )
    assert track.status == "delivered"
    # One call: the custom-id event route needs no lookup.
    assert texts(track) == ("POST https://acme.user.com/api/public/users-by-id/u1/events/ -> 200",)
    assert (invalid.status, invalid.error) == ("rejected", "Parameter event is required")
    assert counts.requests.count("POST /api/public/users-by-id/u1/events/") == 1
    assert KEY not in identify._repr_html_()


def test_a_refused_write_content_is_a_rejected_outcome() -> None:
    with user_com(status_for_writes=400) as (url, _), Destination(CONFIG, base_url=url) as dest:
        outcome = dest.deliver(TRACK)
    assert outcome.status == "rejected"
    assert "400" in (outcome.error or "")


def test_a_wrong_key_or_no_answer_is_a_run_fault_not_an_outcome() -> None:
    wrong = {**CONFIG, "apiKey": "w" * 64}
    with (
        user_com() as (url, _),
        Destination(wrong, base_url=url) as dest,
        pytest.raises(RunFault, match="refused the API key"),
    ):
        dest.deliver(TRACK)
    with (
        Destination(CONFIG, base_url="http://127.0.0.1:9") as dest,
        pytest.raises(RunFault, match="could not be reached"),
    ):
        dest.deliver(TRACK)

    async def adeliver() -> Outcome:
        async with Destination(wrong, base_url=url) as adest:
            return await adest.adeliver(TRACK)

    with user_com() as (url, _), pytest.raises(RunFault):
        asyncio.run(adeliver())


def test_a_passed_client_is_left_open() -> None:
    client = httpx.Client()
    with Destination(CONFIG, client=client):
        pass
    assert not client.is_closed
    client.close()


def test_a_missing_custom_id_event_route_falls_back_to_the_lookup() -> None:
    with (
        user_com(missing_event_route=True) as (url, counts),
        Destination(CONFIG, base_url=url) as dest,
    ):
        outcome = dest.deliver(TRACK)
    assert outcome.status == "delivered", outcome
    assert counts.requests == [
        "POST /api/public/users-by-id/u1/events/",
        "GET /api/public/users-by-id/u1/",
        "POST /api/public/events/",
    ]
