"""The service's front door under hostile clients: bounded connections, heads and slow bodies.

uvicorn alone keeps a connection that never sends a request open forever, lets a request head
grow without bound while it is unterminated, and waits forever for a body that never comes:
enough idle sockets exhaust the descriptors and take `/health` and ingest down. `Guarded`
(uvicorn's httptools protocol, with limits) closes each of those doors:

- at most `max_connections` connections are open at once: at the cap a new connection closes
  the one that has waited longest without sending a request (so idle sockets never crowd out
  real requests); when every connection is busy with a request, a few more (`overflow`) are
  answered 503 with `Retry-After` as soon as their head is read, and beyond those a connection
  is dropped at once, so the descriptors in use stay bounded whatever a client opens;
- a request head must arrive within `header_timeout` (a connection that sends nothing in that
  time is closed; a partial head gets 408) and stay within `max_header_bytes` and
  `max_headers` fields (431, then the connection is closed);
- a body must arrive within `body_timeout` of its head (408, then the connection is closed);
- a client pipelining requests without reading the answers gets at most `MAX_QUEUED` of them
  parsed and queued at a time: past that, or with over `WRITE_HIGH_WATER` bytes of answers
  not yet taken, the connection is not read (its bytes stay in the kernel's buffers, and
  what was read but not parsed waits, unparsed) until the answers drain.
"""

from __future__ import annotations

import asyncio
import json
import time
from asyncio import TimerHandle
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

KB = 1024
TURN_AWAY_SECONDS = 2.0  # how long a connection over the cap may take to send its head
TURNED_AWAY_RETRY_AFTER = "5"
# Pipelining: each request parsed is a queued cycle of a few KB; 20,000 of them per connection
# were 40 MB. A head is fed to the parser a small piece at a time, so that one read of 256 KB
# (thousands of tiny requests) is never all parsed at once.
MAX_QUEUED = 16
WRITE_HIGH_WATER = 256 * KB
HEAD_PIECE = 4 * KB
BODY_PIECE = 256 * KB  # a chunked body, whose length is not known ahead


@dataclass(frozen=True, slots=True)
class Doors:
    """The limits one listening socket serves with."""

    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_header_bytes: int = 64 * KB
    max_headers: int = 100

    @property
    def overflow(self) -> int:
        """Connections over the cap still answered 503 (the rest are dropped at once).

        >>> Doors(max_connections=1000).overflow, Doors(max_connections=10).overflow
        (100, 8)
        """
        return max(8, self.max_connections // 10)

    @property
    def descriptors(self) -> int:
        """Descriptors the sockets of clients may take at most."""
        return self.max_connections + self.overflow


def _answer(status: int, code: str, message: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, the body as the service's errors."""
    body = json.dumps({"code": code, "message": message}).encode()
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in extra),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _asgi_answer(
    status: int, code: str, message: str, extra: tuple[tuple[str, str], ...] = ()
) -> ASGI3Application:
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((name.encode(), value.encode()) for name, value in extra),
    ]

    async def answer(_scope: Scope, _receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return answer


_TURNED_AWAY = _asgi_answer(
    503,
    "overloaded",
    "the service has all the connections it serves at once: try again shortly",
    (("retry-after", TURNED_AWAY_RETRY_AFTER),),
)


class Guarded(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of `doors` (see the module)."""

    doors: ClassVar[Doors] = Doors()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0  # bytes of a head still unterminated
        self._head_size = 0  # the URL and header fields of the head parsed so far
        self._head_fields = 0
        self._heads = 0  # heads read on this connection
        self._head_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        self._waiting_since = 0.0
        self._unparsed = bytearray()  # read, not yet parsed: the queue was full
        self._body_left: int | None = None  # by Content-Length; None: unknown (chunked)
        self._answering: RequestResponseCycle | None = None  # the cycle whose answer is written

    # -- connections -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Not loop.time(): uvloop's is the same for every connection accepted in one turn of
        # the loop, which would make "the one that waited longest" a coin toss among them.
        self._waiting_since = time.monotonic()
        over = len(self.connections) - self.doors.max_connections
        if over > 0 and self._evict_longest_waiting():
            over -= 1
        if over > self.doors.overflow:
            transport.abort()  # a flood: keep its descriptors from piling up
        elif over > 0:
            self.app = _TURNED_AWAY
            self._arm_head_timer(TURN_AWAY_SECONDS)
        else:
            self._arm_head_timer(self.doors.header_timeout)

    @property
    def _waiting(self) -> bool:
        """Between requests: no request of this connection is being read or answered."""
        between = self.cycle is None or self.cycle.response_complete
        return between and self._reading_head and not self.transport.is_closing()

    def _evict_longest_waiting(self) -> bool:
        """At the cap, close the connection that has waited longest without sending a request
        (idle keep-alive, or opened and left), so that a new client is served rather than
        refused: idle sockets cannot crowd out real requests. False when none waits."""
        waiting = [
            other
            for other in self.connections
            if isinstance(other, Guarded) and other is not self and other._waiting
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda other: other._waiting_since)
        oldest._cancel_timers()
        oldest.transport.close()
        oldest.connections.discard(oldest)
        return True

    def on_response_complete(self) -> None:
        self._waiting_since = time.monotonic()
        super().on_response_complete()  # starts the next queued request, reads again
        if self._queue_full() or self._unparsed:
            self.flow.pause_reading()
        self._feed_unparsed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        # uvicorn marks only the newest cycle disconnected; with requests pipelined the one
        # being answered is an older one, whose next write would meet a closed transport and
        # log a traceback per connection (a client can flood the log that way).
        for cycle in (self._answering, *(queued for queued, _app in self.pipeline)):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self.pipeline.clear()
        self._unparsed.clear()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._answering = cycle
        super()._start_asgi_task(cycle, app)

    # -- the head ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._unparsed:  # keep the order: this comes after what waits
            self._unparsed += data
            self.flow.pause_reading()
            return
        self._feed_within_bounds(memoryview(data))

    def _feed_within_bounds(self, data: memoryview) -> None:
        """Parse `data` a piece at a time while the queue has room; keep the rest unparsed,
        and stop reading, once it has none."""
        done = 0
        while done < len(data) and not self.transport.is_closing():
            if self._queue_full():
                self._unparsed += data[done:]
                self.flow.pause_reading()
                return
            piece = HEAD_PIECE if self._reading_head else self._body_piece()
            self._feed(bytes(data[done : done + piece]))
            done += piece
            if self.parser is not None and self.parser.should_upgrade():
                return  # httptools stops at an upgrade, and uvicorn leaves the rest unread

    def _body_piece(self) -> int:
        """A body goes in whole, as it is read (pieces would only slow large batches), but not
        the pipelined heads behind it."""
        if self._body_left is None:
            return BODY_PIECE
        return max(HEAD_PIECE, self._body_left)

    def _queue_full(self) -> bool:
        return (
            len(self.pipeline) >= MAX_QUEUED
            or self.transport.get_write_buffer_size() > WRITE_HIGH_WATER
        )

    def _feed_unparsed(self) -> None:
        """The answers drained: parse what waits, and read again once it is all parsed."""
        if not self._unparsed or self.transport.is_closing() or self._queue_full():
            if self._unparsed:
                self.flow.pause_reading()
            return
        waiting, self._unparsed = bytes(self._unparsed), bytearray()
        self._feed_within_bounds(memoryview(waiting))
        if not self._unparsed and not self._queue_full():
            self.flow.resume_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._feed_unparsed()

    def _feed(self, data: bytes) -> None:
        between_requests = self.cycle is None or self.cycle.response_complete
        if self._reading_head and between_requests and self._head_timer is None:
            self._arm_head_timer(self.doors.header_timeout)
        was_reading_head, heads = self._reading_head, self._heads
        super().data_received(data)
        # Only bytes that were all head count: a chunk that ended a head (and maybe held a
        # whole request) or ended a body is no part of a head still unterminated.
        whole_chunk_was_head = was_reading_head and self._reading_head and heads == self._heads
        if self.transport.is_closing() or not whole_chunk_was_head:
            return
        # httptools holds an unterminated head in memory: cut it off at the limit.
        self._head_bytes += len(data)
        if self._head_bytes > self.doors.max_header_bytes:
            self._refuse_head()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        self._head_fields += 1
        if name.lower() == b"content-length" and value.strip().isdigit():
            self._body_left = int(value)  # only a size hint: the parser checks the value
        super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        if self._body_left is not None:
            self._body_left = max(0, self._body_left - len(body))
        super().on_body(body)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._reading_head = False
        self._heads += 1
        if (
            self._head_size > self.doors.max_header_bytes
            or self._head_fields > self.doors.max_headers
        ):
            self.app = _asgi_answer(431, *self._head_refusal())
        super().on_headers_complete()
        self._body_timer = self.loop.call_later(self.doors.body_timeout, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        self._reading_head = True
        self._head_bytes = self._head_size = self._head_fields = 0
        self._body_left = None
        super().on_message_complete()

    def _head_refusal(self) -> tuple[str, str]:
        return (
            "header_too_large",
            f"the request head is over {self.doors.max_header_bytes // KB} KB or "
            f"{self.doors.max_headers} header fields",
        )

    def _refuse_head(self) -> None:
        self._cancel_timers()
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_answer(431, *self._head_refusal()))
            self.transport.close()
        else:  # a pipelined head behind an answer still being written: no room to say why
            self.transport.abort()

    # -- timeouts ----------------------------------------------------------------------------

    def _arm_head_timer(self, seconds: float) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(seconds, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes or self._head_size:
            self.transport.write(_answer(408, "timeout", "the request head did not arrive in time"))
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self.transport.write(
                _answer(
                    408,
                    "timeout",
                    f"the request body did not arrive within {self.doors.body_timeout:g} s",
                )
            )
            # The handler still waiting for the body reads a disconnect and gives up.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()


def protocol_for(doors: Doors) -> type[Guarded]:
    """The protocol class uvicorn builds each connection with, carrying `doors`."""
    return type("GuardedProtocol", (Guarded,), {"doors": doors})
