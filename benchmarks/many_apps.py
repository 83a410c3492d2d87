"""Many apps in one service (issue 18, item 4): one `usercom serve`, 20 User.com apps.

One sandbox (its own process) stands in for the 20 apps: it accepts any key and gives each
key its own token bucket of 50 requests/s (`--rate-limit-per-key`), which the service does
not know. The service gets the sources form of the config (20 write keys, 20 apps) and runs on
one core (`taskset -c 0`, when there is a core 0 and taskset). A loader posts every app's
tracks at a steady rate above what its limit lets through (default 60 events/s per app, one
request each), so every app always has work queued. After a warm-up the service's /metrics are
read at the start and the end of the measured window (events delivered: one accepted
request each), and once the queue is drained (every request and its answer, 429s included:
a delivery round accounts for its calls when it ends).

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

USERS_PER_APP = 50
PER_BATCH = 20
_SAMPLE = re.compile(r"^(usercom_\w+_total)\{([^}]*)\} ([0-9.e+]+)$", re.M)
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
def sandbox(limit: float) -> Iterator[tuple[str, int]]:
    """The sandbox in its own process, each key its own bucket; yields its URL and pid."""
    command = [sys.executable, "-m", "pipeline.cli", "sandbox", "--port", "0"]
    command += ["--rate-limit", str(limit), "--rate-limit-per-key"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"sandbox did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip(), process.pid
    finally:
        process.terminate()
        process.wait(10)


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


def _samples(metrics: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    for found, labels, value in _SAMPLE.findall(metrics):
        if found == name:
            yield dict(_LABEL.findall(labels)), float(value)


def delivered_by_app(metrics: str) -> dict[str, float]:
    """Events delivered per app: one accepted request each (a userId's identify and track
    are one write each under the delivery strategy)."""
    found: dict[str, float] = {}
    for labels, value in _samples(metrics, "usercom_events_delivered_total"):
        found[labels["app"]] = found.get(labels["app"], 0.0) + value
    return found


def calls_by_app(metrics: str) -> dict[str, tuple[float, float]]:
    """(requests answered, requests answered 429) per app, from /metrics: a round accounts
    for its calls when it ends, so this is read once the queue is drained."""
    found: dict[str, tuple[float, float]] = {}
    for labels, value in _samples(metrics, "usercom_api_calls_total"):
        status = labels.get("status", "")
        if not status.isdigit():
            continue  # a timeout or a lost connection: no answer
        answered, throttled = found.get(labels["app"], (0.0, 0.0))
        throttled += value if status == "429" else 0.0
        found[labels["app"]] = (answered + value, throttled)
    return found


def track(number: int, seq: int) -> dict[str, object]:
    return {
        "type": "track",
        "userId": f"{app_name(number)}-u{seq % USERS_PER_APP}",
        "messageId": f"{app_name(number)}-t-{seq}",
        "event": "Viewed",
        "properties": {"seq": seq},
        "timestamp": "2024-05-01T10:00:00Z",
    }


class Loader:
    """Posts events to the service as an SDK does: a lost connection or a 503 is tried again."""

    def __init__(self, url: str, apps: int) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=60)
        self.apps = apps
        self.posted = self.refused = 0
        self.next_seq = [0] * apps

    async def post(self, number: int, batch: list[dict[str, object]]) -> None:
        for _ in range(5):
            try:
                answer = await self.http.post(
                    "/v1/batch", json={"batch": batch}, headers=auth(number)
                )
            except httpx.TransportError:
                continue
            if answer.status_code == 200:
                self.posted += len(batch)
                return
            await asyncio.sleep(1)
        self.refused += len(batch)

    def tracks(self, number: int, count: int) -> list[dict[str, object]]:
        first = self.next_seq[number]
        self.next_seq[number] += count
        return [track(number, seq) for seq in range(first, first + count)]

    async def prime(self, backlog: int) -> None:
        """Each app's users identified, then `backlog` tracks queued for each app."""
        identifies: list[list[dict[str, object]]] = [
            [
                {"type": "identify", "userId": f"{app_name(n)}-u{u}",
                 "messageId": f"{app_name(n)}-id-{u}"}
                for u in range(USERS_PER_APP)
            ]
            for n in range(self.apps)
        ]  # fmt: skip
        await asyncio.gather(*(self.post(n, batch) for n, batch in enumerate(identifies)))
        for _ in range(0, backlog, 500):
            await asyncio.gather(*(self.post(n, self.tracks(n, 500)) for n in range(self.apps)))

    async def steady(self, rate: float, until: float) -> None:
        """Each app's tracks at `rate` events/s until `until`."""
        if rate <= 0:
            return
        interval = PER_BATCH / rate
        started, tick, sending = time.monotonic(), 0, set()
        while time.monotonic() < until:
            for n in range(self.apps):
                task = asyncio.create_task(self.post(n, self.tracks(n, PER_BATCH)))
                sending.add(task)
                task.add_done_callback(sending.discard)
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * interval - time.monotonic()))
        await asyncio.gather(*sending)


def measure(
    url: str, pid: int, sandbox_pid: int, warmup: float, seconds: float
) -> tuple[dict[str, float], float]:
    """Accepted requests/s per app over the window, and the service's CPU per second."""
    time.sleep(warmup)
    sandbox_before, cpu_before = cpu_seconds(sandbox_pid), cpu_seconds(pid)
    before, started = delivered_by_app(httpx.get(f"{url}/metrics").text), time.monotonic()
    queued = [httpx.get(f"{url}/health").json()["queued"]]
    time.sleep(seconds)
    after = delivered_by_app(httpx.get(f"{url}/metrics").text)
    elapsed = time.monotonic() - started
    cpu, sandbox_cpu = cpu_seconds(pid) - cpu_before, cpu_seconds(sandbox_pid) - sandbox_before
    queued.append(httpx.get(f"{url}/health").json()["queued"])
    print(f"queued at the window's start and end: {queued[0]}, {queued[1]}")
    print(f"sandbox CPU: {sandbox_cpu / elapsed:.2f} s per s")
    rates = {app: (count - before.get(app, 0.0)) / elapsed for app, count in after.items()}
    return rates, cpu / elapsed


def drained(url: str, limit_s: float) -> dict[str, tuple[float, float]]:
    """Every app's calls once the queue is empty (or `limit_s` has passed)."""
    deadline = time.monotonic() + limit_s
    while httpx.get(f"{url}/health").json()["queued"] and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(2)  # the last rounds end and account for their calls
    return calls_by_app(httpx.get(f"{url}/metrics").text)


async def run(
    url: str, pid: int, sandbox_pid: int, args: argparse.Namespace
) -> tuple[dict[str, float], float, dict[str, tuple[float, float]], int]:
    loader = Loader(url, args.apps)
    await loader.prime(args.backlog)
    until = time.monotonic() + args.warmup + args.seconds + 2
    loading = asyncio.create_task(loader.steady(args.events_per_app, until))
    window, cpu = await asyncio.to_thread(measure, url, pid, sandbox_pid, args.warmup, args.seconds)
    await loading
    await loader.http.aclose()
    if loader.refused:
        print(f"the service did not take {loader.refused} events", file=sys.stderr)
    calls = await asyncio.to_thread(drained, url, args.drain)
    return window, cpu, calls, loader.posted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--limit", type=float, default=50.0)
    parser.add_argument("--events-per-app", type=float, default=60.0, help="posted per second")
    parser.add_argument(
        "--backlog", type=int, default=0, help="tracks queued per app before the window"
    )
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait, at most")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the service into PATH")
    args = parser.parse_args()
    with (
        sandbox(args.limit) as (base, sandbox_pid),
        tempfile.TemporaryDirectory() as scratch,
        service(Path(scratch), base, args.apps, args.concurrency, args.profile) as (url, pid),
    ):
        window, cpu, calls, posted = asyncio.run(run(url, pid, sandbox_pid, args))
    target = args.apps * args.limit
    total = sum(window.values())
    print(
        f"{args.apps} apps x {args.limit:.0f} req/s, backlog {args.backlog} and "
        f"{args.events_per_app:.0f} events/s posted per app ({posted} events), --concurrency "
        f"{args.concurrency}, {args.seconds:.0f} s measured after {args.warmup:.0f} s"
    )
    print(f"accepted: {total:7.1f} req/s = {total / target:.3f} x {target:.0f}")
    print(f"service CPU: {cpu:.2f} s per s (1.00 = the whole core)")
    shares = []
    for app in sorted(window):
        answered, throttled = calls.get(app, (0.0, 0.0))
        share = throttled / answered if answered else 0.0
        shares.append(share)
        print(f"  {app}: {window[app]:6.1f} accepted req/s; 429s over the run {share:5.1%}")
    print(f"429 share per app over the run: max {max(shares, default=0):.1%}, target <= 3%")


if __name__ == "__main__":
    main()
