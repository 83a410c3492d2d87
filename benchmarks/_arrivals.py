"""A sandbox that notes when each event lands: `python benchmarks/_arrivals.py LATENCY_MS KEY`.

Prints "listening on URL". Every event write the sandbox answers 2xx is noted with the wall
clock time of its answer (the sandbox stores it just before), under its `data.seq`;
`GET /__arrivals__` returns them as {seq: seconds since the epoch}.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import uvicorn
from starlette.types import Message, Receive, Scope, Send

from pipeline.listening import listening_socket
from pipeline.sandbox import SandboxOptions, create_app

ARRIVALS: dict[str, float] = {}


def app_with_arrivals(latency_ms: float, api_key: str) -> Any:
    sandbox = create_app(SandboxOptions(api_key=api_key, latency_ms=latency_ms))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await sandbox(scope, receive, send)
            return
        if scope["path"] == "/__arrivals__":
            body = json.dumps(ARRIVALS).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["method"] != "POST" or not scope["path"].endswith("/events/"):
            await sandbox(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def hear() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                seq = (json.loads(b"".join(chunks) or b"{}").get("data") or {}).get("seq")
                if seq is not None:
                    ARRIVALS.setdefault(str(seq), time.time())
            await send(message)

        await sandbox(scope, hear, answer)

    return app


def main() -> None:
    latency_ms, api_key = float(sys.argv[1]), sys.argv[2]
    sock = listening_socket("127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app_with_arrivals(latency_ms, api_key), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
