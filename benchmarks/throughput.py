"""Throughput of delivery against the sandbox with 20 ms latency per request, concurrency 32.

Run: .venv/bin/python benchmarks/throughput.py [--users N]
Prints events/s, API calls per event, and the ratio to what 32 / 20 ms allows for that
calls-per-event (target >= 0.90). It also checks that each user's events and page views
reached the sandbox in input order.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from _sandbox import sandbox_process

from pipeline.core.config import parse_config
from pipeline.delivery import DeliveryOptions, deliver, read_jsonl
from pipeline.delivery.loop import run as run_loop
from pipeline.testing.mix import standard_mix

LATENCY_MS = 20.0
CONCURRENCY = 32
CONFIG = json.loads(
    (Path(__file__).parent.parent / "pipeline" / "examples" / "config.json").read_text()
)


def order_kept(state: dict[str, Any]) -> bool:
    """Within each user, stored event timestamps and page paths follow the input order."""
    stamps: dict[int, list[int]] = defaultdict(list)
    for event in state["events"]:
        stamps[event["user_id"]].append(event["timestamp"])
    pages: dict[str, list[str]] = defaultdict(list)
    for view in state["site_views"]:
        pages[view["client_user"]].append(view["page_path"])
    return all(s == sorted(s) for s in stamps.values()) and all(
        p == sorted(p) for p in pages.values()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=400)
    users = parser.parse_args().users
    cfg = parse_config(CONFIG).unwrap()
    lines = [json.dumps(event) for event in standard_mix(users)]
    with sandbox_process("--latency-ms", str(LATENCY_MS)) as url:
        options = DeliveryOptions(concurrency=CONCURRENCY, base_url=url)
        summary = run_loop(deliver(read_jsonl(lines, cfg), cfg, options))
        state = httpx.get(f"{url}/__sandbox__/state").json()
    rate = summary.events / summary.seconds
    ceiling = CONCURRENCY / (LATENCY_MS / 1000) / summary.calls_per_event
    print(f"events:                 {summary.events} ({summary.counts})")
    print(f"API calls per event:    {summary.calls_per_event:.3f}  (target <= 1.2)")
    print(f"time:                   {summary.seconds:.2f} s")
    print(f"events per second:      {rate:.0f}")
    print(f"ceiling 32/20ms/calls:  {ceiling:.0f}")
    print(f"ratio to ceiling:       {rate / ceiling:.2f}  (target >= 0.90)")
    print(f"per-user order kept:    {order_kept(state)}")


if __name__ == "__main__":
    main()
