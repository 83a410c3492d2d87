"""Crash safety of `usercom serve`: SIGKILL at random moments, restart, count what was lost.

Run: .venv/bin/python benchmarks/serve_crash.py [--kills N] [--seed S]
A client streams batches of 20 events (identify, then tracks, and a group now and then, per
user) and, like the official SDKs, sends a batch again until it is answered 200. The service
is killed (SIGKILL) at a random moment 0.3-2.5 s after each start, N times, then started once
more to drain. Every acknowledged event must be delivered (lost must be 0), each user's events
in order, no user or company created twice; a write in flight at a kill may repeat (counted).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from _sandbox import sandbox_process
from _serve import API_KEY, WRITE_KEY, serve_process

from pipeline.delivery.ledger import Ledger

PER_BATCH = 20


class Client:
    """Streams batches to whichever service is up; a batch is sent until it is answered 200."""

    def __init__(self) -> None:
        self.url = ""
        self.acked: list[dict[str, Any]] = []
        self.sent = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.position: Counter[str] = Counter()
        self.users = 0

    def batch(self, number: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for i in range(PER_BATCH):
            if i % 5 == 0:
                self.users += 1
                user = f"user-{self.users}"
                events.append(
                    {
                        "type": "identify",
                        "messageId": f"{user}-identify",
                        "userId": user,
                        "traits": {"email": f"{user}@example.com"},
                    }
                )
                continue
            user = f"user-{max(1, self.users - (i % 7))}"
            self.position[user] += 1
            if number % 9 == 0 and i == 3:
                events.append(
                    {
                        "type": "group",
                        "messageId": f"{user}-group-{number}",
                        "userId": user,
                        "groupId": f"firm-{number % 5}",
                        "traits": {"name": f"Firm {number % 5}"},
                    }
                )
                continue
            events.append(
                {
                    "type": "track",
                    "messageId": f"{user}-t-{self.position[user]}",
                    "userId": user,
                    "event": "Product Viewed",
                    "properties": {"position": self.position[user]},
                    "timestamp": 1_714_557_600 + self.position[user],
                }
            )
        return events

    def run(self) -> None:
        number = 0
        pending: list[dict[str, Any]] | None = None
        while not self.stop.is_set():
            if pending is None:
                number += 1
                pending = self.batch(number)
            with self.lock:
                url = self.url
            try:
                answer = httpx.post(
                    f"{url}/v1/batch",
                    json={"batch": pending},
                    timeout=5,
                    auth=(WRITE_KEY, ""),
                )
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            if answer.status_code == 200:
                self.acked.extend(pending)
                pending = None
            else:
                time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    client = Client()
    sender = threading.Thread(target=client.run, daemon=True)
    with (
        tempfile.TemporaryDirectory() as scratch,
        sandbox_process("--api-key", API_KEY, "--latency-ms", "5") as sandbox,
        (Path(scratch) / "serve.log").open("w") as log,
    ):
        folder = Path(scratch)
        for kill in range(args.kills):
            with serve_process(folder, sandbox, log=log) as (url, process):
                with client.lock:
                    client.url = url
                if kill == 0:
                    sender.start()
                time.sleep(rng.uniform(0.3, 2.5))
                acked_at_kill = len(client.acked)
                process.send_signal(signal.SIGKILL)
                process.wait(10)
            print(f"kill {kill + 1}: {acked_at_kill} events acknowledged so far")
        with serve_process(folder, sandbox, log=log) as (url, process):
            with client.lock:
                client.url = url
            time.sleep(1.0)
            client.stop.set()
            sender.join(10)
            while httpx.get(f"{url}/health").json()["queued"]:
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            code = process.wait(30)
        state = httpx.get(f"{sandbox}/__sandbox__/state").json()
        with Ledger.open_reader(folder / "serve.sqlite") as book:
            status = {row.key: row.status for row in book.rows()}
    lost = [
        e["messageId"] for e in client.acked if status.get(f"bench:{e['messageId']}") != "delivered"
    ]
    users = Counter(u["custom_id"] for u in state["users"])
    firms = Counter(c["custom_id"] for c in state["companies"])
    owner = {u["id"]: u["custom_id"] for u in state["users"]}
    stored: dict[str, list[int]] = {}
    for event in state["events"]:
        stored.setdefault(owner[event["user_id"]], []).append(event["data"]["position"])
    repeats = sum(len(p) - len(set(p)) for p in stored.values())
    in_order = all(p == sorted(p) for p in stored.values())
    tracks = sum(1 for e in client.acked if e["type"] == "track")
    print(f"acknowledged events: {len(client.acked)} ({tracks} tracks), kills: {args.kills}")
    print(f"lost (acknowledged, not delivered): {len(lost)}")
    print(
        f"users created twice: {sum(1 for n in users.values() if n > 1)}, "
        f"companies created twice: {sum(1 for n in firms.values() if n > 1)}"
    )
    print(f"tracks stored twice (a write in flight at a kill): {repeats}")
    print(f"each user's tracks in order: {in_order}; last exit status after SIGTERM: {code}")
    print(json.dumps({"lost": len(lost), "examples": lost[:5]}))


if __name__ == "__main__":
    main()
