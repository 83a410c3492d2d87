"""The one piece of module-level state the library keeps: a shared HTTPS client.

`pipeline.process` / `process_router` called with no transport send through one httpx client
per process, built on first use (under a lock, so threads share it) and closed at exit,
instead of building a client (about 22 ms of CPU, and a new TLS connection) per call.
The async twins keep one `AsyncClient` per running event loop, since an async client belongs
to the loop it was first used in; those are released with their loop.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref

import httpx

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16)


class SharedClients:
    """Lazily built clients; `sync()` is safe to call from many threads at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def sync(self) -> httpx.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=TIMEOUT, limits=LIMITS)
            return self._client

    def for_loop(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(loop)
            if client is None:
                client = httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS)
                self._async[loop] = client
            return client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


SHARED = SharedClients()
atexit.register(SHARED.close)
