"""Cost per request of `FakeUserCom` next to `httpx.MockTransport` with a trivial handler.

Run: .venv/bin/python benchmarks/fake.py [--requests N] [--rounds R]
Three uses, each measured both ways in the same run (median CPU time of R rounds of N
requests): a GET through an `httpx.Client`, a POST through an `httpx.Client`, and one
`pipeline.process` call (an identify: one lookup request, then the final request built).
The MockTransport handler answers a fixed small JSON body, doing no work at all; the fake
routes, checks the key, runs the sandbox handler, renders the user and records the request.
Target: fake / mock <= 3x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import httpx

import pipeline
from pipeline.testing import FakeUserCom

BASE = "https://acme.user.com/api/public"
AUTH = {"Authorization": "Token " + "k" * 64}
CONFIG = {"apiKey": "k" * 64, "appSubdomain": "acme"}
ITEM = {
    "message": {"type": "identify", "userId": "u1", "traits": {"email": "a@b.co"}},
    "destination": {"Config": CONFIG},
}
USER = {"id": 1, "user_key": "abcdefghijkl", "custom_id": "u1"}


def trivial(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=USER)


def seeded_fake() -> FakeUserCom:
    fake = FakeUserCom()
    with httpx.Client(transport=fake, headers=AUTH) as client:
        client.post(f"{BASE}/users/", json={"custom_id": "u1", "email": "a@b.co"})
    return fake


def per_call(call: Callable[[], object], count: int, rounds: int) -> float:
    """Median CPU seconds per call over ``rounds`` rounds of ``count`` calls."""
    for _ in range(min(count, 200)):
        call()
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            call()
        samples.append((time.process_time() - started) / count)
    return statistics.median(samples)


def uses() -> dict[str, Callable[[httpx.BaseTransport], Callable[[], object]]]:
    """Each use: given a transport, the call to time."""
    body = {"custom_id": "u1", "email": "a@b.co"}

    def get(transport: httpx.BaseTransport) -> Callable[[], object]:
        client = httpx.Client(transport=transport, headers=AUTH)
        return lambda: client.get(f"{BASE}/users-by-id/u1/")

    def post(transport: httpx.BaseTransport) -> Callable[[], object]:
        client = httpx.Client(transport=transport, headers=AUTH)
        return lambda: client.post(f"{BASE}/users/update_or_create/", json=body)

    def process(transport: httpx.BaseTransport) -> Callable[[], object]:
        return lambda: pipeline.process(ITEM, transport=transport)

    return {
        "Client.get (user lookup)": get,
        "Client.post (update_or_create)": post,
        "pipeline.process (identify)": process,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"median CPU per request, {args.rounds} rounds x {args.requests} requests")
    print(f"{'use':32} {'FakeUserCom':>12} {'MockTransport':>14} {'ratio':>7}")
    worst = 0.0
    for name, use in uses().items():
        fake_cost = per_call(use(seeded_fake()), args.requests, args.rounds)
        mock_cost = per_call(use(httpx.MockTransport(trivial)), args.requests, args.rounds)
        worst = max(worst, fake_cost / mock_cost)
        print(
            f"{name:32} {fake_cost * 1e6:9.1f} us {mock_cost * 1e6:11.1f} us "
            f"{fake_cost / mock_cost:6.2f}x"
        )
    print(f"worst ratio: {worst:.2f}x  (target <= 3x)")


if __name__ == "__main__":
    main()
