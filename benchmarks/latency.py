"""Latency-bound delivery: sandbox at 150 ms per request, concurrency 64, the standard mix
(with its group calls). Target: events/s >= 0.9 x 64 / 150 ms / calls-per-event.

Run: .venv/bin/python benchmarks/latency.py [--users 200]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _sandbox import sandbox_process

from pipeline.core.config import parse_config
from pipeline.delivery import DeliveryOptions, deliver, read_jsonl
from pipeline.delivery.loop import run as run_loop
from pipeline.testing.mix import standard_mix

LATENCY_MS = 150.0
CONCURRENCY = 64
CONFIG = json.loads(
    (Path(__file__).parent.parent / "pipeline" / "examples" / "config.json").read_text()
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    users = parser.parse_args().users
    cfg = parse_config(CONFIG).unwrap()
    lines = [json.dumps(event) for event in standard_mix(users)]
    flags = ("--latency-ms", str(LATENCY_MS), "--api-key", cfg.api_key)
    with sandbox_process(*flags) as url:
        options = DeliveryOptions(concurrency=CONCURRENCY, base_url=url)
        summary = run_loop(deliver(read_jsonl(lines, cfg), cfg, options))
    rate = summary.events / summary.seconds
    ceiling = CONCURRENCY / (LATENCY_MS / 1000) / summary.calls_per_event
    print(f"events: {summary.events} {dict(summary.counts)}; {summary.seconds:.1f} s")
    print(f"API calls per event: {summary.calls_per_event:.3f}")
    print(f"events/s: {rate:.0f}; ceiling 64 / 150 ms / calls-per-event: {ceiling:.0f}")
    print(f"ratio: {rate / ceiling:.2f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
