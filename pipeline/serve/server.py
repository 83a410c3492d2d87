"""Serving the service: one listening socket, uvicorn, and signals (DELIVERY §6).

SIGTERM (or Ctrl+C) stops accepting, lets requests in progress end, then the lifespan stops
delivery (in-flight deliveries end, bounded) and closes the ledgers; the process exits 0.
"""

from __future__ import annotations

import logging
import resource
import signal
import socket
from collections.abc import Callable
from contextlib import closing
from types import FrameType

import uvicorn

from pipeline.listening import url_of
from pipeline.serve.doors import Doors, protocol_for
from pipeline.serve.logs import emit
from pipeline.serve.options import ServeOptions
from pipeline.serve.service import Service

# Descriptors kept out of the clients' reach: the ledgers (file, WAL, shared memory, lock),
# logs, the event loop's own, and the sockets to User.com.
RESERVED_DESCRIPTORS = 64
PER_APP_DESCRIPTORS = 8
# macOS reports an infinite hard limit but refuses a soft limit above OPEN_MAX.
OPEN_MAX = 10240


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, url: str, announce: Callable[[str], None]) -> None:
        super().__init__(config)
        self._url = url
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self._announce(self._url)


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open descriptors to the hard one (the default soft limit,
    often 1,024, is what a burst of clients exhausts first); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_MAX if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return int(soft) if soft != resource.RLIM_INFINITY else OPEN_MAX
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError):
        return int(soft)
    return int(wanted)


def doors_of(options: ServeOptions, descriptors: int) -> Doors:
    """The limits to serve with: --max-connections, lowered when the descriptors left after
    the service's own would not hold that many clients (and the few answered 503 beyond)."""
    own = RESERVED_DESCRIPTORS + len(options.ledgers) * (PER_APP_DESCRIPTORS + options.concurrency)
    room = max(0, descriptors - own)
    most = max(1, min(room * 10 // 11, room - 8))
    wanted = options.max_connections
    if wanted > most:
        emit(
            logging.WARNING,
            "connections_capped",
            max_connections=most,
            asked=wanted,
            descriptors=descriptors,
            fix="raise the open-files limit (ulimit -n, LimitNOFILE= in the systemd unit)",
        )
    return Doors(
        max_connections=min(wanted, most),
        header_timeout=options.header_timeout,
        body_timeout=options.body_timeout,
        max_header_bytes=options.max_header_bytes,
        max_headers=options.max_headers,
    )


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
    doors = doors_of(service.options, raise_descriptor_limit())
    config = uvicorn.Config(
        service.app,
        http=protocol_for(doors),
        # Between two requests of one connection; the head and body have their own limits.
        timeout_keep_alive=max(1, int(min(5.0, doors.header_timeout))),
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
