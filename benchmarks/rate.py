"""Adaptive rate against an unknown limit (issue 8, DELIVERY §5).

A sandbox with a token bucket of 50 requests/s (unknown to the client); about 3,000
standard-mix events; concurrency 8 and 64; no --rate (adaptive), and --rate 50 beside it.
Prints, per run: accepted requests/s (as a share of 50), the share of requests answered 429,
and whether every event was delivered. Target: >= 0.90 x 50, <= 3% 429, all delivered.

Run: .venv/bin/python benchmarks/rate.py [--users 326] [--limit 50]
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

EXAMPLES = Path(__file__).parent.parent / "pipeline" / "examples"
CONFIG = json.loads((EXAMPLES / "config.json").read_text())


def one_run(users: int, limit: float, concurrency: int, rate: float | None) -> str:
    cfg = parse_config(CONFIG).unwrap()
    lines = [json.dumps(event) for event in standard_mix(users)]
    flags = ("--rate-limit", str(limit), "--api-key", cfg.api_key)
    with sandbox_process(*flags) as url:
        options = DeliveryOptions(concurrency=concurrency, base_url=url, rate=rate)
        summary = run_loop(deliver(read_jsonl(lines, cfg), cfg, options))
    throttled = sum(n for (_, answer), n in summary.calls.items() if answer == "429")
    accepted = summary.api_calls - throttled
    per_second = accepted / summary.seconds
    delivered = summary.counts["delivered"]
    return (
        f"concurrency {concurrency:>2}, {'--rate ' + str(rate) if rate else 'adaptive':>10}: "
        f"{per_second:5.1f} accepted req/s = {per_second / limit:.2f} x limit; "
        f"429s {throttled}/{summary.api_calls} = {throttled / summary.api_calls:.1%}; "
        f"delivered {delivered}/{summary.events}; {summary.calls_per_event:.3f} calls/event; "
        f"{summary.seconds:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=326)  # about 3,000 events
    parser.add_argument("--limit", type=float, default=50.0)
    args = parser.parse_args()
    for concurrency in (8, 64):
        for rate in (None, args.limit):
            print(one_run(args.users, args.limit, concurrency, rate), flush=True)


if __name__ == "__main__":
    main()
