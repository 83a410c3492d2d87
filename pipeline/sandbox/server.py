"""Serving a sandbox over real sockets: in a background thread for tests, or in the foreground."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager

import uvicorn

from pipeline.listening import listening_socket, url_of
from pipeline.sandbox.app import create_app
from pipeline.sandbox.options import SandboxOptions
from pipeline.sandbox.state import Clock

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 10.0
SHUTDOWN_TIMEOUT_S = 10.0


@contextmanager
def serve_in_thread(
    options: SandboxOptions | None = None,
    port: int = 0,
    *,
    log_level: str = "warning",
    clock: Clock | None = None,
) -> Iterator[str]:
    """Serve a fresh sandbox on ``127.0.0.1:port`` (0 = a free port); yield its base URL.

    The server runs in a daemon thread and is shut down, and its socket closed, on exit.
    ``clock`` (default: real UTC time) stamps records, as in ``create_app``.
    """
    config = uvicorn.Config(
        create_app(options, clock=clock),
        log_level=log_level,
        lifespan="off",
        timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT_S / 2),
    )
    server = uvicorn.Server(config)
    with closing(listening_socket(HOST, port)) as sock:
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="usercom-sandbox", daemon=True
        )
        thread.start()
        try:
            _wait_until_started(server, thread)
            yield url_of(sock, HOST)
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
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve a fresh sandbox in the foreground until interrupted (Ctrl+C).

    The socket is bound first (``ListenError`` when it cannot be), then ``on_listening`` gets
    the base URL (with the real port when ``port`` is 0) once the server accepts connections.
    On SIGINT or SIGTERM the server shuts down gracefully, then the signal is raised again
    (uvicorn's way), so the default SIGINT handler raises ``KeyboardInterrupt`` here.
    """
    app = create_app(options)
    with closing(listening_socket(host, port)) as sock:
        url = url_of(sock, host)
        config = uvicorn.Config(app, log_level=log_level, lifespan="off")
        _AnnouncingServer(config, url, on_listening).run(sockets=[sock])


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_listening(url)`` once it serves its sockets."""

    def __init__(
        self, config: uvicorn.Config, url: str, on_listening: Callable[[str], None] | None
    ) -> None:
        super().__init__(config)
        self._url = url
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit and self._on_listening is not None:
            self._on_listening(self._url)
