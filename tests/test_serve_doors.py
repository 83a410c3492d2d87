"""`usercom serve` under hostile clients (issue 13.6): idle and slow connections, endless heads
and bodies that never arrive must not take the service down. Real sockets against
`python -m pipeline.cli serve`, with the limits set small by options."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time
from pathlib import Path

import httpx
from serve_helpers import (
    WRITE_KEY,
    ServiceProcess,
    basic,
    service_process,
    write_config,
)

from pipeline.serve import ServeOptions, Sources
from pipeline.serve.server import doors_of


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _connect(url: str) -> socket.socket:
    sock = socket.create_connection(_address(url), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return sock


def _answer_or_close(sock: socket.socket, within: float) -> bytes:
    """What the service sends before it closes the connection (b"" for a bare close)."""
    sock.settimeout(within)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _serve(
    tmp_path: Path, sandbox: str, *limits: str
) -> contextlib.AbstractContextManager[ServiceProcess]:
    config = write_config(tmp_path / "config.json")
    return service_process(
        "--config",
        config,
        "--ledger",
        tmp_path / "serve.sqlite",
        "--base-url",
        sandbox,
        "--write-key",
        WRITE_KEY,
        *limits,
        log=tmp_path / "log",
    )


def test_a_body_that_never_arrives_is_answered_408_within_the_timeout(
    tmp_path: Path, sandbox: str
) -> None:
    with _serve(tmp_path, sandbox, "--body-timeout", "1s") as service:
        waiting = []
        for _ in range(20):
            sock = _connect(service.url)
            sock.sendall(
                b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: " + basic(WRITE_KEY).encode() + b"\r\n"
                b"Content-Length: 500\r\n\r\n" + b'{"userId": "u1", '
            )
            waiting.append(sock)
        started = time.monotonic()
        answers = [_answer_or_close(sock, within=10) for sock in waiting]
        assert time.monotonic() - started < 6
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408 "), answer
        for sock in waiting:
            sock.close()
        # Nothing half-received was stored, and the service still takes events.
        event = {"type": "track", "userId": "u1", "event": "x", "messageId": "m1"}
        stored = httpx.post(
            f"{service.url}/v1/track", json=event, headers={"Authorization": basic(WRITE_KEY)}
        )
        assert stored.status_code == 200, stored.text
        assert stored.json()["events"] == 1


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(tmp_path: Path, sandbox: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > 512, "this test needs a hard open-files limit above 512"
    with contextlib.ExitStack() as stack:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))  # inherited by the service
        try:
            service = stack.enter_context(_serve(tmp_path, sandbox))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert service.process is not None
        (limits,) = [
            line.split()[3:5]
            for line in Path(f"/proc/{service.process.pid}/limits").read_text().splitlines()
            if line.startswith("Max open files")
        ]
        assert limits == [str(hard), str(hard)], limits


def test_endless_heads_are_cut_off_without_memory_growth(tmp_path: Path, sandbox: str) -> None:
    with _serve(tmp_path, sandbox) as service:
        assert service.process is not None
        pid = service.process.pid
        httpx.get(f"{service.url}/health")
        before = _rss_kb(pid)
        chunk = b"a" * 65536
        cut_off = 0
        for _ in range(20):
            sock = _connect(service.url)
            sent = 0
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
                while sent < 10 * 1024 * 1024:
                    sock.sendall(chunk)
                    sent += len(chunk)
            if sent < 10 * 1024 * 1024:
                cut_off += 1
            answer = _answer_or_close(sock, within=5)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            sock.close()
        grown_mb = (_rss_kb(pid) - before) / 1024
        assert cut_off == 20
        assert grown_mb < 30, f"RSS grew {grown_mb:.0f} MB"
        # Too many header fields: 431 as well.
        many = b"".join(b"X-F%d: v\r\n" % n for n in range(200))
        sock = _connect(service.url)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert _answer_or_close(sock, within=5).startswith(b"HTTP/1.1 431 ")
        sock.close()
        assert httpx.get(f"{service.url}/health").status_code == 200


def _busy(url: str) -> socket.socket:
    """A connection whose request is under way: its head sent, its body still to come."""
    sock = _connect(url)
    sock.sendall(
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: " + basic(WRITE_KEY).encode() + b"\r\nContent-Length: 100\r\n\r\n{"
    )
    return sock


def test_idle_connections_never_crowd_out_a_new_request(tmp_path: Path, sandbox: str) -> None:
    with _serve(tmp_path, sandbox, "--max-connections", "20") as service:
        idle = [_connect(service.url) for _ in range(25)]
        time.sleep(0.3)  # let the service accept them all
        # At the cap a new connection closes the one that waited longest without a request.
        started = time.monotonic()
        for _ in range(3):
            assert httpx.get(f"{service.url}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 3
        assert _answer_or_close(idle[0], within=3) == b""
        for sock in idle:
            sock.close()


def test_past_the_connection_cap_busy_ones_get_new_ones_503_then_recover(
    tmp_path: Path, sandbox: str
) -> None:
    limits = ("--max-connections", "20", "--body-timeout", "2s", "--header-timeout", "2s")
    with _serve(tmp_path, sandbox, *limits) as service:
        busy = [_busy(service.url) for _ in range(20)]
        time.sleep(0.3)
        started = time.monotonic()
        refused = httpx.get(f"{service.url}/health", timeout=5)
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
        assert time.monotonic() - started < 2
        # A flood far beyond the cap is dropped at once rather than piling up descriptors.
        flood = [_connect(service.url) for _ in range(60)]
        time.sleep(0.3)
        for sock in busy:
            assert _answer_or_close(sock, within=6).startswith(b"HTTP/1.1 408 ")
        for sock in busy + flood:
            sock.close()
        time.sleep(0.3)
        assert httpx.get(f"{service.url}/health", timeout=5).status_code == 200
        # An opened connection that sends nothing is closed after --header-timeout; a head
        # that trickles in slower than that gets 408.
        silent, slow = _connect(service.url), _connect(service.url)
        slow.sendall(b"GET /health HTTP/1.1\r\n")
        started = time.monotonic()
        assert _answer_or_close(silent, within=6) == b""
        assert _answer_or_close(slow, within=6).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 5
        silent.close()
        slow.close()


def test_a_large_body_arriving_with_its_head_is_not_taken_for_a_long_head(
    tmp_path: Path, sandbox: str
) -> None:
    with _serve(tmp_path, sandbox) as service:
        batch = [
            {"type": "track", "userId": f"u{n}", "event": "x" * 200, "messageId": f"m{n}"}
            for n in range(600)
        ]
        body = json.dumps({"batch": batch}).encode()
        assert 100 * 1024 < len(body) < 200 * 1024  # over the head limit, within one read
        sock = _connect(service.url)
        sock.sendall(
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + basic(WRITE_KEY).encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        sock.settimeout(20)
        answer = sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]


def test_the_connection_cap_leaves_room_for_the_service_own_descriptors() -> None:
    opts = ServeOptions(Sources({}, {}), {"acme": Path("a.sqlite")}, concurrency=8)
    assert doors_of(opts, 1_048_576).max_connections == 1000
    small = doors_of(opts, 1024)
    assert small.descriptors <= 1024 - 64 - 16
    assert small.max_connections > 800
