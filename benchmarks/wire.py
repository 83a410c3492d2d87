"""CPU per request of the HTTP clients the delivery could stand on, and of our own path.

Run: .venv/bin/python benchmarks/wire.py [--events 3000] [--concurrency 16]

One sandbox in its own process (its CPU is not counted); every candidate makes the same
`--events` identify writes (POST /users/update_or_create/ with the identify's JSON body and
User.com's headers, the answer read and decoded) at `--concurrency` at once, in one run, so
the ratios hold on a loaded machine. Candidates: a bare httpx.AsyncClient, a bare
aiohttp.ClientSession, pyreqwest (Rust's reqwest, installed by hand: not a dependency),
then our `Wire` on its default link, `deliver` (the engine, in process), `usercom send`
(a process of its own: its CPU from getrusage) and `usercom serve` (ingest of batches of 100
and delivery, its CPU from /proc). Also: connections opened per 1,000 events
by the engine (aiohttp's trace hook), which must stay within --concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from _sandbox import sandbox_process
from _serve import API_KEY as SERVE_KEY
from _serve import WRITE_KEY, serve_process

from pipeline.core.calls import headers
from pipeline.core.config import Config, parse_config
from pipeline.delivery import DeliveryOptions, deliver, read_jsonl
from pipeline.delivery.loop import run as run_loop
from pipeline.delivery.wire import AiohttpLink, Wire, verified_tls
from pipeline.runner import Target

KEY = "bench-SECRET-key-" + "b" * 47
CONFIG = {"apiKey": KEY, "appSubdomain": "acme"}


def identify(n: int) -> dict[str, object]:
    return {
        "type": "identify",
        "userId": f"u{n}",
        "messageId": f"m{n}",
        "traits": {"email": f"u{n}@example.com", "firstName": "Ada", "plan": "pro"},
    }


def body_of(n: int) -> bytes:
    fields = {"custom_id": f"u{n}", "email": f"u{n}@example.com", "first_name": "Ada"}
    return json.dumps(fields).encode()


Send = Callable[[int], Awaitable[int]]


async def fan_out(send: Send, events: int, width: int) -> None:
    """`events` requests, at most `width` at once."""
    numbers = iter(range(events))

    async def lane() -> None:
        for n in numbers:
            await send(n)

    await asyncio.gather(*(lane() for _ in range(width)))


def cpu_of(run: Callable[[], None]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def bare_httpx(url: str, events: int, width: int) -> float:
    async def main() -> None:
        limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
        async with httpx.AsyncClient(limits=limits) as client:

            async def send(n: int) -> int:
                response = await client.post(
                    f"{url}/api/public/users/update_or_create/",
                    content=body_of(n),
                    headers=headers(KEY),
                )
                json.loads(response.content)
                return response.status_code

            await fan_out(send, events, width)

    return cpu_of(lambda: asyncio.run(main()))


def bare_aiohttp(url: str, events: int, width: int) -> float:
    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=width)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def send(n: int) -> int:
                async with session.post(
                    f"{url}/api/public/users/update_or_create/",
                    data=body_of(n),
                    headers=headers(KEY),
                ) as response:
                    json.loads(await response.read())
                    return response.status

            await fan_out(send, events, width)

    return cpu_of(lambda: asyncio.run(main()))


def bare_pyreqwest(url: str, events: int, width: int) -> float:
    found: Any = importlib.import_module("pyreqwest.client")  # not a dependency: by hand

    async def main() -> None:
        builder = found.ClientBuilder().max_connections(width).timeout(timedelta(seconds=30))
        async with builder.build() as client:

            async def send(n: int) -> int:
                request = (
                    client.post(f"{url}/api/public/users/update_or_create/")
                    .headers(headers(KEY))
                    .body_bytes(body_of(n))
                    .build()
                )
                response = await request.send()
                json.loads(bytes(await response.bytes()))
                return int(response.status)

            await fan_out(send, events, width)

    return cpu_of(lambda: asyncio.run(main()))


def config() -> Config:
    cfg: Config = parse_config(CONFIG).unwrap()
    return cfg


def our_wire(url: str, events: int, width: int) -> float:
    from pipeline.core.calls import call
    from pipeline.core.types import freeze

    async def main() -> None:
        async with Wire.of(config(), url, width) as wire:

            async def send(n: int) -> int:
                sent = await wire.send(call("upsert_user", body=freeze(json.loads(body_of(n)))))  # type: ignore[arg-type]
                return 0 if sent.fault else 1

            await fan_out(send, events, width)

    return cpu_of(lambda: asyncio.run(main()))


def engine(url: str, events: int, width: int) -> tuple[float, int]:
    """`deliver` in process, on the default link; (CPU, connections it opened)."""
    lines = [json.dumps(identify(n)) for n in range(events)]
    cfg = config()
    options = DeliveryOptions(concurrency=width, base_url=url)
    link = AiohttpLink(width, verified_tls(), counting=True)

    async def main() -> None:
        async with Wire(Target.of(cfg, url), cfg.base_url, width, link) as wire:
            summary = await deliver(read_jsonl(lines, cfg), cfg, options, wire=wire)
        assert summary.counts["delivered"] == events, summary.counts

    return cpu_of(lambda: run_loop(main())), link.opened


def usercom_send(url: str, events: int, width: int) -> float:
    """`usercom send` as an operator runs it (ledger, --out, progress): its process's CPU."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "config.json").write_text(json.dumps(CONFIG))
        (folder / "events.jsonl").write_text(
            "".join(json.dumps(identify(n)) + "\n" for n in range(events))
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "send",
                str(folder / "events.jsonl"),
                "--config",
                str(folder / "config.json"),
                "--ledger",
                str(folder / "ledger.sqlite"),
                "--base-url",
                url,
                "--concurrency",
                str(width),
                "--out",
                str(folder / "out.jsonl"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        delivered = sum(
            json.loads(line)["status"] == "delivered"
            for line in (folder / "out.jsonl").read_text().splitlines()
        )
        assert delivered == events, delivered
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def process_cpu(pid: int) -> float:
    """A running process's CPU seconds so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def usercom_serve(events: int, width: int) -> float:
    """`usercom serve`: its process's CPU to ingest `events` identifies (batches of 100) and
    deliver them, start-up excluded."""
    auth = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
    with (
        tempfile.TemporaryDirectory() as scratch,
        sandbox_process("--api-key", SERVE_KEY) as sandbox,
        serve_process(Path(scratch), sandbox, "--concurrency", str(width)) as (url, process),
        httpx.Client(base_url=url, headers=auth, timeout=60) as http,
    ):
        before = process_cpu(process.pid)
        for first in range(0, events, 100):
            batch = [identify(n) for n in range(first, min(first + 100, events))]
            http.post("/v1/batch", json={"batch": batch}).raise_for_status()
        while http.get("/health").json()["queued"]:
            time.sleep(0.05)
        return process_cpu(process.pid) - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    events, width = args.events, args.concurrency
    rows: list[tuple[str, float]] = []
    with sandbox_process("--api-key", KEY) as url:
        candidates: list[tuple[str, Callable[[], float]]] = [
            ("bare aiohttp", lambda: bare_aiohttp(url, events, width)),
            ("bare httpx.AsyncClient", lambda: bare_httpx(url, events, width)),
            ("pipeline Wire (default link)", lambda: our_wire(url, events, width)),
        ]
        if importlib.util.find_spec("pyreqwest") is not None:
            candidates.insert(2, ("bare pyreqwest", lambda: bare_pyreqwest(url, events, width)))
        for name, measure in candidates:
            if args.only and args.only not in name:
                continue
            rows.append((name, measure()))
        cpu, opened = engine(url, events, width)
        rows.append(("deliver() in process", cpu))
        whole = usercom_send(url, events, width)
        rows.append(("usercom send (process)", whole))
        # Start-up (imports, config, ledger) is paid once per run, not per event.
        rows.append(("usercom send, start-up excluded", whole - usercom_send(url, 1, width)))
    rows.append(("usercom serve (ingest + delivery)", usercom_serve(events, width)))
    base = next((cpu for name, cpu in rows if name == "bare aiohttp"), rows[0][1])
    print(f"{events} identifies, concurrency {width}; CPU per request, and ÷ bare aiohttp")
    for name, cpu in rows:
        print(f"  {name:32s} {cpu / events * 1000:7.3f} ms   {cpu / base:5.2f}x")
    if opened:
        print(f"  connections opened per 1,000 events (engine): {opened * 1000 / events:.1f}")


if __name__ == "__main__":
    main()
