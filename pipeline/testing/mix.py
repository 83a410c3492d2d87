"""The standard mix of events, generated deterministically (no randomness, no clock).

Each user has 1 identify, 6 tracks and 2 pages, and every fifth user a group call. Users
are interleaved round by round, so a file of the mix mixes users the way a live stream does
while each user's own events stay in order (the identify first).

>>> events = list(standard_mix(5))
>>> len(events), events[0]["type"], events[0]["userId"]
(46, 'identify', 'user-0001')
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BASE_SECONDS = 1_714_557_600  # 2024-05-01T10:00:00Z


def _user_events(n: int) -> list[dict[str, Any]]:
    user = f"user-{n:04d}"
    email = f"{user}+test@example.com"
    stamp = BASE_SECONDS + n * 60
    events: list[dict[str, Any]] = [
        {
            "type": "identify",
            "messageId": f"{user}-identify",
            "userId": user,
            "traits": {
                "email": email,
                "firstName": "Ada",
                "lastName": f"Tester {n}",
                "gender": ["female", "male", "unknown"][n % 3],
                "plan": ["free", "pro"][n % 2],
                "age": 20 + n % 50,
            },
        }
    ]
    events.extend(
        {
            "type": "track",
            "messageId": f"{user}-track-{i}",
            "userId": user,
            "event": ["Product Viewed", "Order Completed"][i % 2],
            "properties": {"sku": f"SKU-{i}", "price": 10 + i, "position": i},
            "timestamp": stamp + i,
        }
        for i in range(6)
    )
    events.extend(
        {
            "type": "page",
            "messageId": f"{user}-page-{i}",
            "userId": user,
            "timestamp": f"2024-05-01T10:{n % 60:02d}:{i:02d}Z",
            "context": {"page": {"url": f"https://shop.example.com/p/{i}", "path": f"/p/{i}"}},
        }
        for i in range(2)
    )
    if n % 5 == 0:
        events.append(
            {
                "type": "group",
                "messageId": f"{user}-group",
                "userId": user,
                "groupId": f"company-{n // 5 % 7}",
                "traits": {
                    "name": f"Company {n // 5 % 7}",
                    "industry": "Retail",
                    "address": {"street": "1 Main St", "city": "Springfield", "zip": 12345},
                },
            }
        )
    return events


def standard_mix(users: int, block: int = 1000) -> Iterator[dict[str, Any]]:
    """The mix for `users` users (numbered from 1), interleaved round by round.

    Users are interleaved within blocks of `block` users, so a mix of any size is generated
    in bounded memory.
    """
    for first in range(1, users + 1, block):
        per_user = [_user_events(n) for n in range(first, min(first + block, users + 1))]
        longest = max(len(events) for events in per_user)
        for round_ in range(longest):
            for events in per_user:
                if round_ < len(events):
                    yield events[round_]
