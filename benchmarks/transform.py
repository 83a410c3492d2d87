"""Median cost per event of `pipeline.process` on a fixed mix, against a bare MockTransport call.

Run: .venv/bin/python benchmarks/transform.py [--rounds N]
Both figures are measured in the same run, so the ratio holds however busy the machine is.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

from pipeline import process

CONFIG = {
    "apiKey": "k" * 64,
    "appSubdomain": "acme",
    "userAttributesMapping": [{"from": "plan", "to": "tier"}],
    "userEvents": [
        {
            "rsEventName": "Order",
            "userEventName": "order",
            "eventProperties": [{"from": "v", "to": "value"}],
        }
    ],
    "companyAttributesMapping": [{"from": "industry", "to": "sector"}],
}
USER = {"id": 7, "user_key": "abcdefghijkl", "custom_id": "u1"}


def answer(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if "/companies-by-id/" in path:
        return httpx.Response(404, json={"detail": "Not found."})
    if path.endswith("/companies/"):
        return httpx.Response(201, json={"id": 3})
    return httpx.Response(200, json=USER)


def mix() -> list[dict[str, Any]]:
    traits = {"email": "a+b@x.io", "firstName": "Ada", "gender": "f", "plan": "pro", "age": 3}
    messages: list[dict[str, Any]] = [
        {"type": "identify", "userId": "u1", "traits": traits},
        *[
            {"type": "track", "userId": "u1", "event": "Order", "properties": {"v": i},
             "timestamp": "2024-05-01T10:00:00Z"}
            for i in range(6)
        ],
        *[
            {"type": "page", "userId": "u1", "timestamp": "2024-05-01T10:00:00Z",
             "context": {"page": {"url": f"https://x.io/{i}", "path": f"/{i}"}}}
            for i in range(2)
        ],
        {"type": "group", "userId": "u1", "groupId": "g1",
         "traits": {"name": "Acme", "industry": "IT"}},
    ]  # fmt: skip
    return [
        {"message": m, "destination": {"Config": CONFIG}, "metadata": {"i": i}}
        for i, m in enumerate(messages)
    ]


def median_seconds(work: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    rounds = parser.parse_args().rounds
    transport = httpx.MockTransport(answer)
    items = mix()
    with httpx.Client(transport=transport) as client:
        bare = median_seconds(
            lambda: client.get("https://acme.user.com/api/public/users-by-id/u1/"), rounds * 5
        )
    per_round = median_seconds(
        lambda: [process(item, transport=transport) for item in items], rounds
    )
    per_event = per_round / len(items)
    print(f"events in the mix:            {len(items)}")
    print(f"bare MockTransport request:   {bare * 1e6:8.1f} µs")
    print(f"process(), per event:         {per_event * 1e6:8.1f} µs")
    print(f"ratio (target <= 3):          {per_event / bare:8.2f}")


if __name__ == "__main__":
    main()
