"""`usercom serve` under pipelined floods (issue 13.6 kinds): a client that pipelines thousands
of requests and never reads the answers must not grow the service's memory nor slow `/health`
for others. Real sockets against `python -m pipeline.cli serve`."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
from serve_helpers import WRITE_KEY, basic, service_process, write_config

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _flood(url: str, requests: int, within: float) -> tuple[socket.socket, int]:
    """A connection that pipelines `requests` requests (for at most `within` s) and reads
    nothing; how many bytes the service took."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setblocking(False)
    data = memoryview(REQUEST * requests)
    sent = 0
    deadline = time.monotonic() + within
    while sent < len(data) and time.monotonic() < deadline:
        with contextlib.suppress(BlockingIOError):
            sent += sock.send(data[sent : sent + 65536])
            continue
        time.sleep(0.01)
    return sock, sent


def test_pipelined_requests_never_read_do_not_grow_memory(tmp_path: Path, sandbox: str) -> None:
    config = write_config(tmp_path / "config.json")
    with service_process(
        "--config", config, "--ledger", tmp_path / "serve.sqlite", "--base-url", sandbox,
        "--write-key", WRITE_KEY, log=tmp_path / "log",
    ) as service:  # fmt: skip
        assert service.process is not None
        pid = service.process.pid
        assert httpx.get(f"{service.url}/metrics", timeout=10).status_code == 200
        before = _rss_kb(pid)
        floods = [_flood(service.url, 20_000, within=3.0) for _ in range(3)]
        time.sleep(1.0)  # what was taken in is parsed and queued by now
        grown_mb = (_rss_kb(pid) - before) / 1024
        started = time.monotonic()
        answer = httpx.get(f"{service.url}/health", timeout=10)
        waited = time.monotonic() - started
        for sock, _sent in floods:
            sock.close()
        assert answer.status_code == 200, answer.text
        assert grown_mb < 20, f"RSS grew {grown_mb:.0f} MB ({[s for _, s in floods]} bytes taken)"
        assert waited < 5, f"/health took {waited:.1f} s"


def _track(n: int) -> bytes:
    body = json.dumps({"type": "track", "userId": f"u{n}", "event": "x", "messageId": f"m{n}"})
    return (
        b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: " + basic(WRITE_KEY).encode() + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body.encode()
    )


def test_every_pipelined_request_is_answered_in_order_when_the_client_reads(
    tmp_path: Path, sandbox: str
) -> None:
    """Holding a flood back loses nothing: 600 requests sent at once, bodies among them,
    get 600 answers in order once the client reads."""
    config = write_config(tmp_path / "config.json")
    with service_process(
        "--config", config, "--ledger", tmp_path / "serve.sqlite", "--base-url", sandbox,
        "--write-key", WRITE_KEY, log=tmp_path / "log",
    ) as service:  # fmt: skip
        requests = b"".join(_track(n) if n % 3 == 0 else REQUEST for n in range(600))
        host, port = service.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sender = threading.Thread(target=sock.sendall, args=(requests,))
            sender.start()
            received = b""
            while received.count(b"HTTP/1.1 ") < 600:
                chunk = sock.recv(1 << 20)
                assert chunk, f"closed after {received.count(b'HTTP/1.1 ')} answers"
                received += chunk
            sender.join()
        statuses = re.findall(rb"HTTP/1\.1 (\d+) ", received)
        assert statuses == [b"200"] * 600
        # The answers keep the requests' order: every third one is an ingest answer.
        kinds = [b'"events"' in part for part in received.split(b"HTTP/1.1 ")[1:]]
        assert kinds == [n % 3 == 0 for n in range(600)]
        # Held-back bytes behind an upgrade request stay unread, as uvicorn leaves them.
        upgrade = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(upgrade + REQUEST * 300)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_pipelining_client_that_goes_away_leaves_no_traceback_in_the_log(
    tmp_path: Path, sandbox: str
) -> None:
    """The answer being written belongs to an older request than the newest one read: when the
    client leaves, that one must stop writing too, not log a traceback per connection."""
    config = write_config(tmp_path / "config.json")
    log = tmp_path / "log"
    with service_process(
        "--config", config, "--ledger", tmp_path / "serve.sqlite", "--base-url", sandbox,
        "--write-key", WRITE_KEY, log=log,
    ) as service:  # fmt: skip
        floods = [_flood(service.url, 20_000, within=3.0) for _ in range(6)]
        time.sleep(6.0)  # the answers back up: every connection is paused, mid-answer
        for sock, _sent in floods:
            sock.close()
        time.sleep(1.5)
        assert httpx.get(f"{service.url}/health", timeout=10).status_code == 200
        text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert "Exception in ASGI application" not in text
