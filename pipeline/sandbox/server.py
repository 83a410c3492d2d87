"""Serving a sandbox over real sockets: in a background thread for tests, or in the foreground."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager

import uvicorn

from pipeline.sandbox.app import create_app
from pipeline.sandbox.options import SandboxOptions

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 10.0


@contextmanager
def serve_in_thread(
    options: SandboxOptions | None = None, port: int = 0, *, log_level: str = "warning"
) -> Iterator[str]:
    """Serve a fresh sandbox on ``127.0.0.1:port`` (0 = a free port); yield its base URL.

    The server runs in a daemon thread and is shut down, and its socket closed, on exit.
    """
    config = uvicorn.Config(
        create_app(options),
        log_level=log_level,
        lifespan="off",
        timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT_S / 2),
    )
    server = uvicorn.Server(config)
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when proto is TCP,
    # and without it every keep-alive answer waits ~40 ms for a delayed ACK.
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        bound_port = sock.getsockname()[1]
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="usercom-sandbox", daemon=True
        )
        thread.start()
        try:
            _wait_until_started(server, thread)
            yield f"http://{HOST}:{bound_port}"
        finally:
            server.should_exit = True
            thread.join(SHUTDOWN_TIMEOUT_S)


def _wait_until_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the sandbox server stopped while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sandbox server did not start in {STARTUP_TIMEOUT_S} s")
        time.sleep(0.01)


def run(
    options: SandboxOptions | None = None,
    port: int = 8000,
    *,
    host: str = HOST,
    log_level: str = "info",
) -> None:
    """Serve a fresh sandbox in the foreground until interrupted (Ctrl+C)."""
    uvicorn.run(create_app(options), host=host, port=port, log_level=log_level, lifespan="off")
