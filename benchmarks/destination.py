"""Connections opened and CPU per call: `Destination.process` next to module-level `process`.

Run: .venv/bin/python benchmarks/destination.py [--calls N]
One sandbox process (plain HTTP) behind a TCP proxy in another process that counts the
connections it accepts. The same N track events (each one user lookup) go, in one run, through:

1. one `Destination(config, base_url=proxy)` with no transport (its own pooled client);
2. module-level `pipeline.process(item)` with no transport: the one shared client. It sends to
   https://acme.user.com, so for this benchmark only the shared client is built with a
   transport that rewrites each request's origin to the proxy (what `base_url` does);
3. the behaviour before issue 9, emulated: `pipeline.process(item, transport=...)` with a new
   `httpx.HTTPTransport()` per call (what building an `httpx.Client` per call costs: an SSL
   context with the certifi bundle loaded, and a fresh connection), closed after the call.

CPU per call is `time.process_time()` of this process (the proxy and the sandbox run in
others). Target: row 1 opens <= 2 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import httpx
from _sandbox import sandbox_process

import pipeline
from pipeline.shared_client import LIMITS, SHARED, TIMEOUT

TOKEN = "k" * 64
CONFIG = {"apiKey": TOKEN, "appSubdomain": "acme"}
USERS = 50


# --- a counting TCP proxy, in its own process ---------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _serve_proxy(target_port: int, ready: Connection, accepted: Synchronized[int]) -> None:
    async def main() -> None:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with accepted.get_lock():
                accepted.value += 1
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", target_port
            )
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

        server = await asyncio.start_server(relay, "127.0.0.1", 0, backlog=2048)
        ready.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


class CountingProxy:
    """A proxy to ``target`` that counts accepted connections (``accepted``)."""

    def __init__(self, target: str) -> None:
        port = httpx.URL(target).port
        assert port is not None
        context = multiprocessing.get_context("fork")
        self._accepted: Synchronized[int] = context.Value("i", 0)
        mine, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve_proxy, args=(port, theirs, self._accepted), daemon=True
        )
        self._process.start()
        self.url = f"http://127.0.0.1:{mine.recv()}"

    @property
    def accepted(self) -> int:
        with self._accepted.get_lock():
            return int(self._accepted.value)

    def close(self) -> None:
        self._process.terminate()
        self._process.join(5)


# --- sending to the proxy instead of User.com ---------------------------------------------------


class ToOrigin(httpx.BaseTransport):
    """Send every request to ``origin`` (scheme, host, port), keeping its path and query."""

    def __init__(self, origin: str, inner: httpx.BaseTransport) -> None:
        self._origin = httpx.URL(origin)
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(
            scheme=self._origin.scheme, host=self._origin.host, port=self._origin.port
        )
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


# --- the three ways -----------------------------------------------------------------------------


def tracks(count: int) -> list[dict[str, Any]]:
    return [
        {"type": "track", "userId": f"u{n % USERS}", "event": "Seen", "properties": {"n": n}}
        for n in range(count)
    ]


def measure(
    name: str, proxy: CountingProxy, messages: list[dict[str, Any]], call: Callable[..., Any]
) -> tuple[str, int, float, float]:
    before = proxy.accepted
    started_cpu, started = time.process_time(), time.perf_counter()
    for message in messages:
        answer = call(message)
        assert answer["statusCode"] == 200, answer
    cpu = (time.process_time() - started_cpu) / len(messages)
    wall = (time.perf_counter() - started) / len(messages)
    time.sleep(0.2)  # let the proxy count the last accepts
    return name, proxy.accepted - before, cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    calls = parser.parse_args().calls
    messages = tracks(calls)
    with sandbox_process() as sandbox:
        with httpx.Client(base_url=sandbox, headers={"Authorization": f"Token {TOKEN}"}) as c:
            for n in range(USERS):
                c.post("/api/public/users/", json={"custom_id": f"u{n}"}).raise_for_status()
        proxy = CountingProxy(sandbox)
        try:
            rows = []
            with pipeline.Destination(CONFIG, base_url=proxy.url) as destination:
                rows.append(measure("Destination.process", proxy, messages, destination.process))

            SHARED._client = httpx.Client(  # benchmark only: aim the shared client at the proxy
                transport=ToOrigin(proxy.url, httpx.HTTPTransport(limits=LIMITS)), timeout=TIMEOUT
            )

            def shared(message: dict[str, Any]) -> dict[str, Any]:
                return pipeline.process({"message": message, "destination": {"Config": CONFIG}})

            rows.append(measure("pipeline.process (shared)", proxy, messages, shared))
            SHARED.close()

            def one_client_each(message: dict[str, Any]) -> dict[str, Any]:
                transport = ToOrigin(proxy.url, httpx.HTTPTransport())
                try:
                    item = {"message": message, "destination": {"Config": CONFIG}}
                    return pipeline.process(item, transport=transport)
                finally:
                    transport.close()

            rows.append(measure("process, a client per call", proxy, messages, one_client_each))
        finally:
            proxy.close()
    print(f"{calls} track events, one user lookup each, sandbox over plain HTTP")
    print(f"{'way':30} {'connections':>11} {'CPU/call':>10} {'wall/call':>10}")
    for name, connections, cpu, wall in rows:
        print(f"{name:30} {connections:11d} {cpu * 1e3:7.2f} ms {wall * 1e3:7.2f} ms")
    base = rows[-1][2]
    for name, _, cpu, _ in rows[:-1]:
        print(
            f"CPU per call, {name} / a client per call: {cpu / base:.3f} ({base / cpu:.0f}x less)"
        )
    print(f"target: Destination.process opens <= 2 connections: {rows[0][1] <= 2}")


if __name__ == "__main__":
    main()
