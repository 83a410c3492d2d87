"""Shared pieces of the `usercom serve` tests: the service in a thread or in its own process.

Every test talks to the service and to a sandbox over real loopback sockets. In a thread
(`service_in_thread`) the tuning fields of `ServeOptions` can be shortened (retry waits, probe
waits); in a process (`ServiceProcess`) the service is exactly what `usercom serve` runs, so it
can be killed (SIGKILL) or stopped (SIGTERM).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from pipeline.core.config import parse_config
from pipeline.delivery.ledger import Ledger
from pipeline.serve import ServeOptions, Service, Sources, ledger_paths
from pipeline.serve.options import parse_sources

REPO = Path(__file__).resolve().parent.parent
CLI = (sys.executable, "-m", "pipeline.cli")
API_KEY = "serve-SECRET-key-3c9a1f7b5d2e4f6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0"
SUBDOMAIN = "acme"
WRITE_KEY = "wk-test-1"
RAW_CONFIG: dict[str, Any] = {
    "apiKey": API_KEY,
    "appSubdomain": SUBDOMAIN,
    "userEvents": [
        {
            "rsEventName": "Order Completed",
            "userEventName": "order_completed",
            "eventProperties": [{"from": "price", "to": "value"}],
        }
    ],
}
FAST: dict[str, Any] = {
    "retry_initial": 0.3,
    "retry_max": 1.0,
    "probe_initial": 0.2,
    "probe_max": 0.5,
    "event_seconds": 3.0,
    "drain_seconds": 3.0,
}
"""Short waits, so that retries and probes happen within a test."""


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def auth(key: str = WRITE_KEY) -> dict[str, str]:
    return {"Authorization": basic(key)}


def write_config(path: Path, raw: dict[str, Any] | None = None) -> Path:
    path.write_text(json.dumps(RAW_CONFIG if raw is None else raw), encoding="utf-8")
    return path


def options(
    ledger: Path,
    base_url: str | None,
    *,
    raw: dict[str, Any] | None = None,
    write_keys: Sequence[str] = (WRITE_KEY,),
    **tuning: Any,
) -> ServeOptions:
    """ServeOptions as the command builds them, with FAST waits unless overridden."""
    sources: Sources = parse_sources(RAW_CONFIG if raw is None else raw, tuple(write_keys), "test")
    chosen = {**FAST, **tuning}
    return ServeOptions(
        sources=sources,
        ledgers=ledger_paths(ledger, tuple(sources.apps)),
        port=0,
        base_url=base_url,
        **chosen,
    )


@dataclass
class Running:
    """A service in a thread: its URL and the Service object (its apps, metrics, store)."""

    url: str
    service: Service

    def app(self, name: str = SUBDOMAIN) -> Any:
        return self.service.apps[name]


@contextmanager
def service_in_thread(opts: ServeOptions) -> Iterator[Running]:
    """Serve `opts` on a free loopback port in a thread; stop it (lifespan shutdown) on exit."""
    service = Service.open(opts)
    config = uvicorn.Config(
        service.app, lifespan="on", log_level="warning", timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="usercom-serve", daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + 15
            while not server.started:
                assert thread.is_alive(), "the service stopped while starting"
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.01)
            yield Running(f"http://127.0.0.1:{port}", service)
        finally:
            server.should_exit = True
            thread.join(20)
            service.store.close()


def cli_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


@dataclass
class ServiceProcess:
    """`python -m pipeline.cli serve ...` in its own process."""

    args: tuple[str, ...]
    log: Path
    process: subprocess.Popen[str] | None = None
    url: str = ""
    lines: list[str] = field(default_factory=list)

    def start(self, startup_s: float = 20) -> ServiceProcess:
        errors = self.log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(
            [*CLI, "serve", "--port", "0", *self.args],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=cli_env(),
            cwd=REPO,
        )
        errors.close()
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], startup_s)
        assert ready, f"the service did not start: {self.log.read_text()}"
        line = self.process.stdout.readline().strip()
        prefix = "usercom serve listening on "
        assert line.startswith(prefix), f"unexpected first line {line!r}: {self.log.read_text()}"
        self.url = line.removeprefix(prefix)
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def service_process(*args: str | Path, log: Path) -> Iterator[ServiceProcess]:
    running = ServiceProcess(tuple(str(a) for a in args), log).start()
    try:
        yield running
    finally:
        running.stop()


def post(
    url: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = WRITE_KEY,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> httpx.Response:
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = basic(key)
    if content is None:
        content = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    return httpx.post(f"{url}{path}", content=content, headers=sent, timeout=timeout)


def health(url: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/health", timeout=10)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def sandbox_state(base_url: str) -> dict[str, Any]:
    answer = httpx.get(f"{base_url}/__sandbox__/state", timeout=10)
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()
    return state


def wait_until(check: Callable[[], object], timeout: float = 20, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return bool(check())


def ledger_counts(path: Path) -> dict[str, int]:
    """Events per status, read-only (works while the service writes)."""
    if not path.exists():
        return {}
    with contextlib.closing(Ledger.open_reader(path)) as book:
        return book.counts()


def ledger_rows(path: Path) -> list[Any]:
    with contextlib.closing(Ledger.open_reader(path)) as book:
        return list(book.rows())


def track(user: str, position: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": f"{user}-track-{position}",
        "userId": user,
        "event": "Product Viewed",
        "properties": {"position": position},
        "timestamp": 1_714_557_600 + position,
        **extra,
    }


def identify(user: str, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": f"{user}-identify",
        "userId": user,
        "traits": {"email": f"{user}@example.com", **traits},
    }


def tracks_by_user(state: dict[str, Any]) -> dict[str, list[int]]:
    """custom_id -> the `position` property of its stored events, in the order stored."""
    owner = {user["id"]: user["custom_id"] for user in state["users"]}
    found: dict[str, list[int]] = {}
    for event in state["events"]:
        found.setdefault(owner[event["user_id"]], []).append(event["data"]["position"])
    return found


def config_for(raw: dict[str, Any]) -> Any:
    return parse_config(raw).unwrap()


def with_key(raw: dict[str, Any], key: str) -> dict[str, Any]:
    return {**raw, "apiKey": key}
