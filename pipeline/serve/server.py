"""Serving the service: one listening socket, uvicorn, and signals (DELIVERY §6).

SIGTERM (or Ctrl+C) stops accepting, lets requests in progress end, then the lifespan stops
delivery (in-flight deliveries end, bounded) and closes the ledgers; the process exits 0.
"""

from __future__ import annotations

import errno
import signal
import socket
from collections.abc import Callable
from contextlib import closing
from types import FrameType

import uvicorn

from pipeline.serve.service import Service

BACKLOG = 2048


class ListenError(OSError):
    """The service cannot listen where it was asked to (in use, not allowed)."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` and listening; `ListenError` says why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when proto is TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            message = f"port {port} on {host} is in use: pick another --port (0 picks a free one)"
        else:
            message = f"cannot listen on {host}:{port}: {error.strerror or error}"
        raise ListenError(message) from error
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{port}"


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, url: str, announce: Callable[[str], None]) -> None:
        super().__init__(config)
        self._url = url
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self._announce(self._url)


def _ignore(_sig: int, _frame: FrameType | None) -> None:
    """uvicorn raises the signal it stopped on again once it is done: then exit quietly."""


def serve(
    service: Service,
    sock: socket.socket,
    announce: Callable[[str], None],
    *,
    log_level: str = "warning",
) -> None:
    """Serve on `sock` (from `listening_socket`) until SIGTERM or SIGINT; then return."""
    host = service.options.host
    config = uvicorn.Config(
        service.app,
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(service.options.drain_seconds)),
        server_header=False,
    )
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with closing(sock):
            _Server(config, url_of(sock, host), announce).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
