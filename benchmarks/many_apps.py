"""Many apps in one service (issue 18, item 4): one `usercom serve`, 20 User.com apps.

One sandbox (its own process) stands in for the 20 apps: it accepts any key and gives each
key its own token bucket of 50 requests/s (`--rate-limit-per-key`), which the service does
not know. The service gets the sources form of the config (20 write keys, 20 apps) and runs on
one core (`taskset -c 0`, when there is a core 0 and taskset). A loader posts every app's
tracks at a steady rate above what its limit lets through (default 60 events/s per app, one
request each), so every app always has work queued. After a warm-up the service's /metrics are
read at the start and the end of the measured window.

Prints, for the window: accepted requests/s of all apps together (as a share of 20 x 50 =
1,000), each app's accepted requests/s and its share answered 429, and the service's CPU
(seconds of CPU per second of the window: 1.0 is the whole core). Target: >= 0.90 x 1,000
accepted, <= 3% 429 for every app.

Run: .venv/bin/python benchmarks/many_apps.py [--apps 20] [--limit 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from _sandbox import sandbox_process

USERS_PER_APP = 50
PER_BATCH = 20
_SAMPLE = re.compile(r"^(usercom_api_calls_total)\{([^}]*)\} ([0-9.e+]+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def app_name(number: int) -> str:
    return f"app{number:02d}"


def api_key(number: int) -> str:
    return f"{app_name(number)}-SECRET-".ljust(64, "k")


def write_key(number: int) -> str:
    return f"wk-{app_name(number)}"


def sources(apps: int) -> dict[str, object]:
    return {
        "sources": [
            {
                "writeKey": write_key(n),
                "destination": {"apiKey": api_key(n), "appSubdomain": app_name(n)},
            }
            for n in range(apps)
        ]
    }


def auth(number: int) -> dict[str, str]:
    token = base64.b64encode(f"{write_key(number)}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextmanager
def service(
    folder: Path, base_url: str, apps: int, concurrency: int, profile: str | None = None
) -> Iterator[tuple[str, int]]:
    """`usercom serve` on core 0 with the sources config; yields its URL and pid."""
    config = folder / "sources.json"
    config.write_text(json.dumps(sources(apps)))
    profiled = [] if profile is None else ["-m", "cProfile", "-o", profile]
    command = [sys.executable, *profiled, "-m", "pipeline.cli", "serve", "--config", str(config)]
    command += ["--ledger", str(folder / "serve.sqlite"), "--port", "0", "--base-url", base_url]
    command += ["--concurrency", str(concurrency)]
    if shutil.which("taskset") and os.cpu_count() and 0 in os.sched_getaffinity(0):
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the service did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip(), process.pid
    finally:
        process.terminate()
        process.wait(60)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calls_by_app(metrics: str) -> dict[str, tuple[float, float]]:
    """(requests answered, requests answered 429) per app, from /metrics."""
    found: dict[str, tuple[float, float]] = {}
    for _, labels, value in _SAMPLE.findall(metrics):
        named = dict(_LABEL.findall(labels))
        status = named.get("status", "")
        if not status.isdigit():
            continue  # a timeout or a lost connection: no answer
        app = named.get("app", "?")
        answered, throttled = found.get(app, (0.0, 0.0))
        found[app] = (answered + float(value), throttled + (float(value) if status == "429" else 0))
    return found


async def load(url: str, apps: int, rate: float, until: float) -> int:
    """Each app's users identified, then its tracks at `rate` events/s until `until`."""
    posted = refused = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def post(number: int, batch: list[dict[str, object]]) -> None:
            nonlocal posted, refused
            for _ in range(5):  # as the SDKs do: a lost connection or a 503 is tried again
                try:
                    answer = await http.post(
                        "/v1/batch", json={"batch": batch}, headers=auth(number)
                    )
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    posted += len(batch)
                    return
                await asyncio.sleep(1)
            refused += len(batch)

        await asyncio.gather(
            *(
                post(
                    n,
                    [
                        {"type": "identify", "userId": f"{app_name(n)}-u{u}",
                         "messageId": f"{app_name(n)}-id-{u}"}
                        for u in range(USERS_PER_APP)
                    ],
                )
                for n in range(apps)
            )
        )  # fmt: skip
        interval = PER_BATCH / rate
        started, tick, sending = time.monotonic(), 0, set()
        while time.monotonic() < until:
            for n in range(apps):
                first = tick * PER_BATCH
                batch: list[dict[str, object]] = [
                    {"type": "track", "userId": f"{app_name(n)}-u{seq % USERS_PER_APP}",
                     "messageId": f"{app_name(n)}-t-{seq}", "event": "Viewed",
                     "properties": {"seq": seq}, "timestamp": "2024-05-01T10:00:00Z"}
                    for seq in range(first, first + PER_BATCH)
                ]  # fmt: skip
                task = asyncio.create_task(post(n, batch))
                sending.add(task)
                task.add_done_callback(sending.discard)
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * interval - time.monotonic()))
        await asyncio.gather(*sending)
    if refused:
        print(f"the service did not take {refused} events", file=sys.stderr)
    return posted


def measure(
    url: str, pid: int, warmup: float, seconds: float
) -> tuple[dict[str, tuple[float, float]], float]:
    time.sleep(warmup)
    before, cpu_before, started = (
        calls_by_app(httpx.get(f"{url}/metrics").text),
        cpu_seconds(pid),
        time.monotonic(),
    )
    time.sleep(seconds)
    after, cpu_after = calls_by_app(httpx.get(f"{url}/metrics").text), cpu_seconds(pid)
    elapsed = time.monotonic() - started
    window = {
        app: (answered - before.get(app, (0, 0))[0], throttled - before.get(app, (0, 0))[1])
        for app, (answered, throttled) in after.items()
    }
    return {app: (a / elapsed, t / elapsed) for app, (a, t) in window.items()}, (
        cpu_after - cpu_before
    ) / elapsed


async def run(
    url: str, pid: int, args: argparse.Namespace
) -> tuple[dict[str, tuple[float, float]], float, int]:
    until = time.monotonic() + args.warmup + args.seconds + 2
    loading = asyncio.create_task(load(url, args.apps, args.events_per_app, until))
    window, cpu = await asyncio.to_thread(measure, url, pid, args.warmup, args.seconds)
    return window, cpu, await loading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--limit", type=float, default=50.0)
    parser.add_argument("--events-per-app", type=float, default=60.0, help="posted per second")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", metavar="PATH", help="cProfile the service into PATH")
    args = parser.parse_args()
    flags = ("--rate-limit", str(args.limit), "--rate-limit-per-key")
    with (
        sandbox_process(*flags) as base,
        tempfile.TemporaryDirectory() as scratch,
        service(Path(scratch), base, args.apps, args.concurrency, args.profile) as (url, pid),
    ):
        window, cpu, posted = asyncio.run(run(url, pid, args))
    target = args.apps * args.limit
    accepted = {app: answered - throttled for app, (answered, throttled) in window.items()}
    total = sum(accepted.values())
    print(
        f"{args.apps} apps x {args.limit:.0f} req/s, {args.events_per_app:.0f} events/s posted "
        f"per app ({posted} events), --concurrency {args.concurrency}, {args.seconds:.0f} s "
        f"measured after {args.warmup:.0f} s"
    )
    print(f"accepted: {total:7.1f} req/s = {total / target:.3f} x {target:.0f}")
    print(f"service CPU: {cpu:.2f} s per s (1.00 = the whole core)")
    shares = []
    for app in sorted(window):
        answered, throttled = window[app]
        share = throttled / answered if answered else 0.0
        shares.append(share)
        print(f"  {app}: {accepted[app]:6.1f} accepted req/s, 429s {share:5.1%}")
    print(f"429 share per app: max {max(shares, default=0):.1%}, target <= 3%")


if __name__ == "__main__":
    main()
