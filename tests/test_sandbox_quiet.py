"""The sandbox and its command under careless clients and options (issue 14.14, 14.20): a
client gone mid-request costs at most one log line, never a traceback; an empty API key is
refused at start rather than refusing every key."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.sandbox.__main__ import main as sandbox_main


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def uvicorn_logs() -> Iterator[Records]:
    handler = Records()
    yield handler
    logging.getLogger("uvicorn").removeHandler(handler)


def _leave_mid_request(url: str, head: bytes) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)


@pytest.mark.parametrize("latency_ms", [0, 100])
def test_a_client_gone_mid_request_costs_at_most_one_line(
    uvicorn_logs: Records, latency_ms: int
) -> None:
    with serve_in_thread(SandboxOptions(latency_ms=latency_ms)) as url:
        # uvicorn configures its loggers as the server starts: listen from then on.
        logging.getLogger("uvicorn").addHandler(uvicorn_logs)
        _leave_mid_request(
            url,
            b"POST /api/public/users/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token k\r\n"
            b'Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{"email": ',
        )
        time.sleep(0.3 + latency_ms / 1000)
        # The sandbox goes on serving.
        assert httpx.get(f"{url}/__sandbox__/state").status_code == 200
    assert [r for r in uvicorn_logs.records if r.exc_info] == []
    shown = [r.getMessage() for r in uvicorn_logs.records if r.levelno >= logging.WARNING]
    assert len(shown) <= 1, shown
    assert all("\n" not in line for line in shown)


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_api_key_is_refused_at_start(key: str) -> None:
    # --port 70000 is refused after the key: should the key pass by mistake, no server starts.
    result = CliRunner().invoke(app, ["sandbox", "--api-key", key, "--port", "70000"])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert "--api-key must not be empty" in line
    with pytest.raises(SystemExit) as stopped:
        sandbox_main(["--api-key", key, "--port", "70000"])
    assert stopped.value.code == 2
    with pytest.raises(ValueError, match="api_key must not be empty"):
        SandboxOptions(api_key=key)
