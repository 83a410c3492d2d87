"""One listening TCP socket, for the sandbox and the service alike.

It lives at the top of the package, apart from both, because the import contracts keep the
sandbox independent of the pipeline and the service independent of the sandbox; it imports
nothing of the pipeline itself.
"""

from __future__ import annotations

import errno
import socket

MAX_PORT = 65535
BACKLOG = 2048


class ListenError(OSError):
    """A socket cannot listen where it was asked to (in use, not allowed, no such port)."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` and listening; `ListenError` says why not.

    >>> from contextlib import closing
    >>> with closing(listening_socket("127.0.0.1", 0)) as sock:
    ...     sock.getsockname()[1] > 0
    True
    """
    if not 0 <= port <= MAX_PORT:
        raise ListenError(f"port must be 0..{MAX_PORT} (0 picks a free one), got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when proto is TCP,
    # and without it every keep-alive answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise _refusal(error, host, port) from error
    return sock


def _refusal(error: OSError, host: str, port: int) -> ListenError:
    if error.errno == errno.EADDRINUSE:
        message = f"port {port} on {host} is in use: pick another --port (0 picks a free one)"
    else:
        message = f"cannot listen on {host}:{port}: {error.strerror or error}"
    problem = ListenError(message)
    problem.errno = error.errno  # callers may tell "in use" from "not allowed"
    return problem


def url_of(sock: socket.socket, host: str) -> str:
    """The base URL a client reaches `sock` at (with the real port when 0 was asked for)."""
    port = sock.getsockname()[1]
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{port}"
