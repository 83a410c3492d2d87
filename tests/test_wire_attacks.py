"""The network path (aiohttp, no `transport=`) against a User.com that misbehaves on purpose:
an answer with no end, one that trickles in forever. A raw socket server on 127.0.0.1
plays it: only real sockets show how much of an answer the client takes and for how long."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from helpers import KEY

from pipeline.core.answers import Unreachable, meaning
from pipeline.core.calls import call
from pipeline.core.config import Config, parse_config
from pipeline.delivery.wire import MAX_ANSWER_BYTES, AiohttpLink, Timeouts, Wire, verified_tls
from pipeline.runner import MAX_RETRY_AFTER_S, retry_after_of

CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def config() -> Config:
    cfg: Config = parse_config({"apiKey": KEY, "appSubdomain": "acme"}).unwrap()
    return cfg


@contextmanager
def misbehaving(answer: Callable[[socket.socket], int]) -> Iterator[tuple[str, list[int]]]:
    """A server whose `answer` writes to each connection until the client goes; the bytes
    each connection took are in the list."""
    listener = socket.create_server(("127.0.0.1", 0))
    taken: list[int] = []

    def serve() -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            with peer:
                peer.recv(65536)
                try:
                    taken.append(answer(peer))
                except OSError as gone:
                    taken.append(getattr(gone, "sent", -1))

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", taken
    finally:
        listener.close()


def endless_chunks(peer: socket.socket) -> int:
    """200 and a chunked body that never ends, as fast as the client reads."""
    sent = len(CHUNKED_HEAD)
    peer.sendall(CHUNKED_HEAD)
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            peer.sendall(chunk)
        except OSError:
            break
        sent += len(chunk)
    return sent


def trickle(peer: socket.socket) -> int:
    """200 and a body of one byte every 50 ms, forever: no read ever waits long."""
    peer.sendall(CHUNKED_HEAD)
    deadline = time.monotonic() + 20
    sent = 0
    while time.monotonic() < deadline:
        try:
            peer.sendall(b"1\r\n \r\n")
        except OSError:
            break
        sent += 1
        time.sleep(0.05)
    return sent


def send(origin: str, timeouts: Timeouts) -> tuple[Unreachable, float]:
    async def main() -> object:
        link = AiohttpLink(1, verified_tls(), timeouts)
        async with Wire(Wire.of(config(), origin, 1).target, config().base_url, 1, link) as wire:
            return (await wire.send(call("user_by_id", "u1"))).answer

    began = time.monotonic()
    answer = asyncio.run(asyncio.wait_for(main(), 30))
    assert isinstance(answer, Unreachable), answer
    return answer, time.monotonic() - began


def test_an_answer_with_no_end_is_cut_off_at_the_limit_as_a_broken_answer() -> None:
    with misbehaving(endless_chunks) as (origin, taken):
        answer, _ = send(origin, Timeouts(connect=5.0, read=5.0))
        while not taken:
            time.sleep(0.01)
    assert meaning(answer) == "lost"
    assert "over" in answer.detail
    # what the server got out before the client hung up (socket buffers hold a few MB more)
    assert taken[0] < MAX_ANSWER_BYTES + (16 << 20), taken


def test_an_answer_that_trickles_in_forever_times_out() -> None:
    with misbehaving(trickle) as (origin, _):
        answer, _ = send(origin, Timeouts(connect=1.0, read=0.5))
    assert (answer.reason, meaning(answer)) == ("timeout", "timeout")


@pytest.mark.parametrize(
    ("said", "seconds"),
    [
        (["inf"], MAX_RETRY_AFTER_S),
        (["1e309"], MAX_RETRY_AFTER_S),
        (["99999999999"], MAX_RETRY_AFTER_S),
        (["nan"], None),
        (["-5"], 0.0),
        (["Wed, 21 Oct 2015 07:28:00 GMT"], None),
        (["3"], 3.0),
    ],
)
def test_a_garbage_retry_after_never_stops_delivery_for_longer_than_the_cap(
    said: list[str], seconds: float | None
) -> None:
    assert retry_after_of(said) == seconds
