"""The transformer API (DELIVERY §6, SPEC §11): rudder-transformer's endpoints, no queue.

`POST /v0/destinations/user` takes a list of processor items and answers a list of response
items; `POST /routerTransform` takes `{"destType": "USER", "input": [...]}` and answers
`{"output": [...]}`. The config comes with each item; lookups and company writes are made
(to --base-url when given, keeping the real User.com URLs in the envelopes), and the final
request is answered, not sent: rudder-server sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from returns.result import Failure, Result

from pipeline.compat import Targets, _router_item, arun_item, processor_item
from pipeline.core.config import Config
from pipeline.core.errors import PipelineError, instrumentation
from pipeline.core.steps import Final
from pipeline.delivery.incoming import plain, unheld
from pipeline.serve.ingest import Parsed, Refused, Unreadable

Outcome = Result[tuple[Config, Final], PipelineError]


class Redirect(httpx.AsyncBaseTransport):
    """Sends every request to `origin` instead of the host it names (path and query kept)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, origin: str) -> None:
        self.inner = inner
        self.origin = httpx.URL(origin)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url.copy_with(
            scheme=self.origin.scheme, host=self.origin.host, port=self.origin.port
        )
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        moved = httpx.Request(
            request.method,
            url,
            headers=headers,
            content=request.content,
            extensions=request.extensions,
        )
        return await self.inner.handle_async_request(moved)

    async def aclose(self) -> None:
        await self.inner.aclose()


def transport(base_url: str | None) -> httpx.AsyncBaseTransport:
    """Real HTTPS, or everything to `base_url` (the sandbox, a proxy)."""
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=64))
    return inner if base_url is None else Redirect(inner, base_url)


async def _run(
    item: object, suspect: bool, via: httpx.AsyncBaseTransport, targets: Targets
) -> tuple[object, Outcome]:
    """The item (as it can be echoed) and its outcome. An item holding a number Python cannot
    hold (`1e999`, an integer over its digit limit) is that item's error, never its
    neighbours': it is echoed with that number as its text. So is an item that cannot be read
    (nested too deeply): it is echoed with the members that can be (its metadata)."""
    if isinstance(item, Unreadable):
        return plain(item.members), Failure(instrumentation(item.why))
    why = unheld(item) if suspect else None
    if why is not None:
        return plain(item), Failure(instrumentation(why))
    return item, await arun_item(item, via, targets)


async def processor(parsed: Parsed, via: httpx.AsyncBaseTransport) -> list[dict[str, Any]]:
    document = parsed.document
    if not isinstance(document, list):
        raise Refused(400, "invalid_request", "the body must be a JSON array of processor items")
    targets = Targets()  # one body's items mostly share one destination: its Target once
    return [processor_item(*await _run(item, parsed.suspect, via, targets)) for item in document]


async def router(parsed: Parsed, via: httpx.AsyncBaseTransport) -> dict[str, Any]:
    document = parsed.document
    if isinstance(document, Unreadable):
        document = document.members
    if not isinstance(document, Mapping):
        raise Refused(
            400, "invalid_request", 'the body must be {"destType": "USER", "input": [...]}'
        )
    kind = document.get("destType")
    if not isinstance(kind, str) or kind.strip().upper() != "USER":
        raise Refused(
            400,
            "invalid_request",
            f"destType must be USER (this service is the User.com destination): got {kind!r}",
        )
    items = document.get("input")
    if not isinstance(items, list):
        raise Refused(400, "invalid_request", "input must be a JSON array of router items")
    targets = Targets()
    outputs = [_router_item(*await _run(item, parsed.suspect, via, targets)) for item in items]
    return {"output": outputs}
