"""DELIVERY §1-§3 on the network path: with no `transport=`, `Wire` sends over aiohttp, and
everything that rode on httpx rides on it too: the key blanked, Retry-After, no redirect
followed, timeouts and refused connections as `Unreachable` in httpx's words, connections
kept alive (at most `width`), TLS verified. A stdlib HTTP server in a thread on 127.0.0.1
plays User.com: only real sockets show connection behaviour."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import KEY

from pipeline import Destination
from pipeline.core.answers import Reply, Unreachable, meaning
from pipeline.core.calls import call
from pipeline.core.config import Config, parse_config
from pipeline.core.types import thaw
from pipeline.delivery.wire import AiohttpLink, Timeouts, Wire, verified_tls

AGENTS: list[str] = []  # the User-Agent of each write the servers below received


def config() -> Config:
    cfg: Config = parse_config({"apiKey": KEY, "appSubdomain": "acme"}).unwrap()
    return cfg


class UserCom(BaseHTTPRequestHandler):
    """Answers by the user id asked for (GET /api/public/users-by-id/<case>/)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as User.com
    peers: set[tuple[str, int]]

    def log_message(self, *_: object) -> None:
        return None

    def _answer(self, status: int, body: object, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.peers.add(self.client_address)  # type: ignore[attr-defined]
        case = self.path.rstrip("/").rsplit("/", 1)[-1]
        if case == "echo":
            self._answer(400, {"detail": f"bad {self.headers['Authorization']}"})
        elif case == "throttled":
            self._answer(429, {"detail": "slow down"}, {"Retry-After": "3"})
        elif case == "moved":
            self._answer(302, {}, {"Location": "/api/public/users-by-id/echo/"})
        elif case == "slow":
            time.sleep(1.0)
            self._answer(404, {"detail": "Not found."})
        elif case == "dropped":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._answer(404, {"detail": "Not found.", "path": self.path})

    def do_POST(self) -> None:
        self.server.peers.add(self.client_address)  # type: ignore[attr-defined]
        self.server.agents.append(self.headers["User-Agent"])  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", "0"))
        sent = json.loads(self.rfile.read(length))
        self._answer(201, {"id": 1, "got": sent})


@contextmanager
def user_com(tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, set[tuple[str, int]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), UserCom)
    server.daemon_threads = True
    peers: set[tuple[str, int]] = set()
    server.peers = peers  # type: ignore[attr-defined]
    server.agents = AGENTS  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", peers
    finally:
        server.shutdown()
        server.server_close()


DEFAULT = Timeouts()


def ask(origin: str, subject: str, width: int = 1, timeouts: Timeouts = DEFAULT) -> Reply:
    async def main() -> Reply | Unreachable:
        wire = Wire(
            Wire.of(config(), origin, width).target,
            config().base_url,
            width,
            AiohttpLink(width, verified_tls(), timeouts),
        )
        async with wire:
            return (await wire.send(call("user_by_id", subject))).answer

    answer = asyncio.run(main())
    assert isinstance(answer, Reply), answer
    return answer


def test_the_default_link_is_aiohttp() -> None:
    assert isinstance(Wire.of(config(), None, 4).link, AiohttpLink)


def test_a_write_goes_out_with_its_body_and_its_encoded_path_unchanged() -> None:
    with user_com() as (origin, _):

        async def main() -> tuple[Reply | Unreachable, Reply | Unreachable]:
            async with Wire.of(config(), origin, 2) as wire:
                write = await wire.send(call("upsert_user", body={"custom_id": "u1"}))
                read = await wire.send(call("user_by_id", "a/b c"))
                return write.answer, read.answer

        write, read = asyncio.run(main())
    assert write == Reply(201, {"id": 1, "got": {"custom_id": "u1"}})
    assert isinstance(read, Reply)
    assert thaw(read.body) == {"detail": "Not found.", "path": "/api/public/users-by-id/a%2Fb%20c/"}


def test_the_key_echoed_back_is_blanked() -> None:
    with user_com() as (origin, _):
        answer = ask(origin, "echo")
    assert answer.status == 400
    assert KEY not in json.dumps(thaw(answer.body))
    assert "<apiKey>" in json.dumps(thaw(answer.body))


def test_retry_after_is_read_and_a_redirect_is_not_followed() -> None:
    with user_com() as (origin, _):
        throttled = ask(origin, "throttled")
        moved = ask(origin, "moved")
    assert (throttled.status, throttled.retry_after) == (429, 3.0)
    assert (moved.status, meaning(moved)) == (302, "redirect")


def unreachable(origin: str, subject: str, timeouts: Timeouts = DEFAULT) -> Unreachable:
    async def main() -> Reply | Unreachable:
        link = AiohttpLink(1, verified_tls(), timeouts)
        async with Wire(Wire.of(config(), origin, 1).target, config().base_url, 1, link) as wire:
            return (await wire.send(call("user_by_id", subject))).answer

    answer = asyncio.run(main())
    assert isinstance(answer, Unreachable), answer
    return answer


def test_a_slow_answer_is_a_read_timeout_and_a_dropped_one_a_lost_connection() -> None:
    with user_com() as (origin, _):
        slow = unreachable(origin, "slow", Timeouts(connect=5.0, read=0.2))
        dropped = unreachable(origin, "dropped")
    assert (slow, meaning(slow)) == (Unreachable("timeout", "ReadTimeout"), "timeout")
    assert dropped.reason == "connection"
    assert meaning(dropped) == "lost"


def test_a_refused_connection_is_unreachable() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    refused = unreachable(f"http://127.0.0.1:{port}", "u1")
    assert (refused, meaning(refused)) == (Unreachable("connection", "ConnectError"), "unreachable")


def test_connections_are_kept_alive_and_never_more_than_width() -> None:
    with user_com() as (origin, peers):

        async def main() -> int:
            link = AiohttpLink(4, verified_tls(), counting=True)
            target = Wire.of(config(), origin, 4).target
            async with Wire(target, config().base_url, 4, link) as wire:
                await asyncio.gather(*(wire.send(call("user_by_id", f"u{n}")) for n in range(200)))
                return link.opened

        opened = asyncio.run(main())
    assert 1 <= opened <= 4
    assert len(peers) == opened


def test_tls_is_verified_a_self_signed_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    with user_com(served) as (origin, _):
        refused = unreachable(origin, "u1")
        trusting = ssl.create_default_context(cafile=str(cert))

        async def main() -> Reply | Unreachable:
            link = AiohttpLink(1, trusting)
            target = Wire.of(config(), origin, 1).target
            async with Wire(target, config().base_url, 1, link) as wire:
                return (await wire.send(call("user_by_id", "u1"))).answer

        trusted = asyncio.run(main())
    assert refused == Unreachable("connection", "ConnectError")
    assert isinstance(trusted, Reply)
    assert trusted.status == 404


@pytest.mark.parametrize("width", [1, 3])
def test_the_probe_over_the_network_finds_no_fault(width: int) -> None:
    with user_com() as (origin, _):

        async def main() -> str | None:
            async with Wire.of(config(), origin, width) as wire:
                return await wire.probe()

        assert asyncio.run(main()) is None


def wire_threads() -> int:
    return sum(thread.name == "usercom-wire" for thread in threading.enumerate())


def test_destination_deliver_goes_over_the_network_path_from_many_threads() -> None:
    AGENTS.clear()
    before = wire_threads()
    identifies = [{"type": "identify", "userId": f"u{n}"} for n in range(40)]
    with user_com() as (origin, peers):
        with Destination({"apiKey": KEY, "appSubdomain": "acme"}, base_url=origin) as dest:
            with ThreadPoolExecutor(8) as pool:
                outcomes = list(pool.map(dest.deliver, identifies))
            assert wire_threads() == before + 1  # one loop thread, whatever the callers
        assert wire_threads() == before  # closed with the Destination
    assert [o.status for o in outcomes] == ["delivered"] * 40
    assert {str(o.requests[0]).split(" ")[1] for o in outcomes} == {
        "https://acme.user.com/api/public/users/update_or_create/"
    }
    assert len(AGENTS) == 40
    assert all("aiohttp" in agent for agent in AGENTS), set(AGENTS)
    assert len(peers) <= 32


def test_plain_http_builds_no_tls_context_and_every_https_link_shares_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reading certifi's roots costs tens of ms per app at start: only https pays it, once.
    import pipeline.delivery.wire as wire_module

    def no_tls() -> ssl.SSLContext:
        raise AssertionError("a TLS context was built for plain http")

    with user_com() as (origin, _), monkeypatch.context() as patched:
        patched.setattr(wire_module, "verified_tls", no_tls)

        async def main() -> Reply | Unreachable:
            async with Wire.of(config(), origin, 2) as wire:
                return (await wire.send(call("user_by_id", "u1"))).answer

        answer = asyncio.run(main())
    assert isinstance(answer, Reply)
    assert answer.status == 404
    assert verified_tls() is verified_tls()
