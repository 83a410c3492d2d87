"""Delivery against User.com as it really is (issue 8): what the docs leave open, tolerated.

Over real loopback sockets, against the faithful sandbox: the user key spelled `key`,
values over User.com's length limits, and a rate limit nobody told us about.
"""

from __future__ import annotations

from typing import Any

from e2e_helpers import API_KEY, FAST, deliver_lines, lines_of, sandbox_state

from pipeline.sandbox import SandboxOptions, serve_in_thread


def _people(users: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n in range(users):
        events.append({"type": "identify", "userId": f"k{n}", "traits": {"email": f"k{n}@x.io"}})
        events.append(
            {
                "type": "page",
                "userId": f"k{n}",
                "timestamp": "2024-05-01T10:00:00Z",
                "context": {"page": {"url": "https://x.io/a", "path": "/a"}},
            }
        )
    return events


def test_pages_land_when_user_com_spells_the_user_key_key() -> None:
    with serve_in_thread(SandboxOptions(api_key=API_KEY, user_key_field="key")) as url:
        run = deliver_lines(lines_of(_people(3)), url, FAST)
        state = sandbox_state(url)
    assert run.statuses() == {"delivered": 6}
    keys = {user["user_key"] for user in state["users"]}
    assert {view["client_user"] for view in state["site_views"]} == keys


def test_values_too_long_for_user_com_are_truncated_with_a_warning() -> None:
    long_name, long_city = "N" * 55, "C" * 80
    identify = {
        "type": "identify",
        "userId": "long-1",
        "traits": {"firstName": long_name, "address": {"city": long_city}},
    }
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        run = deliver_lines(lines_of([identify]), url, FAST)
        state = sandbox_state(url)
    (outcome,) = run.outcomes
    assert outcome.status == "delivered", outcome
    assert len(outcome.warnings) == 2
    assert "first_name was 55 characters" in outcome.warnings[0]
    (user,) = state["users"]
    assert user["city"] == long_city[:64]


def test_an_unknown_rate_limit_is_found_with_few_429s_and_nothing_lost() -> None:
    events = [
        {"type": "track", "userId": f"r{n % 30}", "event": "Seen", "properties": {"n": n}}
        for n in range(240)
    ]
    identifies = [{"type": "identify", "userId": f"r{n}"} for n in range(30)]
    limited = SandboxOptions(api_key=API_KEY, rate_limit_rps=40)
    with serve_in_thread(limited) as url:
        run = deliver_lines(lines_of(identifies + events), url, FAST)
        state = sandbox_state(url)
    throttled = sum(n for (_, answer), n in run.summary.calls.items() if answer == "429")
    assert run.statuses() == {"delivered": 270}
    assert len(state["events"]) == 240
    # Slow start overshoots once; after that the pace stays under the bucket.
    assert throttled / run.summary.api_calls <= 0.05, run.summary.calls
