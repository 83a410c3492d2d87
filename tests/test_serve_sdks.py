"""Clients nobody here wrote: the official RudderStack and Segment Python SDKs send
identify/track/page/group calls for several users through `usercom serve` into the sandbox.
Every event lands, each user's in order (DELIVERY §6)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import (
    API_KEY,
    Running,
    health,
    ledger_counts,
    options,
    sandbox_state,
    service_in_thread,
    tracks_by_user,
    wait_until,
)

from pipeline.sandbox import SandboxOptions, serve_in_thread

rudder = pytest.importorskip("rudderstack.analytics.client")
segment = pytest.importorskip("segment.analytics.client")

USERS = 6
TRACKS = 5
SDK_KEY = "sdk-write-key"


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_in_thread(SandboxOptions(api_key=API_KEY, latency_ms=1)) as url:
        yield url


def drive(client: Any, prefix: str) -> None:
    """identify, tracks, a page and a group per user, the users interleaved call by call."""
    users = [f"{prefix}-{n}" for n in range(USERS)]
    for user in users:
        client.identify(user, {"email": f"{user}@example.com", "name": f"User {user}"})
    for position in range(TRACKS):
        for user in users:
            client.track(user, "Product Viewed", {"position": position})
    for user in users:
        client.page(
            user,
            "Docs",
            "Home",
            {"url": f"https://shop.example.com/{user}", "path": f"/{user}"},
        )
        client.group(user, f"{prefix}-firm-{users.index(user) % 2}", {"name": f"Firm of {prefix}"})
    client.flush()
    client.shutdown()


def check(service: Running, sandbox: str, ledger: Path, prefix: str) -> None:
    total = USERS * (TRACKS + 3)
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == total, timeout=60), (
        ledger_counts(ledger)
    )
    assert health(service.url)["queued"] == 0
    state = sandbox_state(sandbox)
    users = {u["custom_id"]: u for u in state["users"]}
    assert sorted(users) == sorted(f"{prefix}-{n}" for n in range(USERS))
    assert tracks_by_user(state) == {user: list(range(TRACKS)) for user in users}
    assert sorted(view["page_path"] for view in state["site_views"]) == sorted(
        f"/{user}" for user in users
    )
    firms = {f["custom_id"]: f for f in state["companies"]}
    assert sorted(firms) == [f"{prefix}-firm-0", f"{prefix}-firm-1"]
    assert sum(len(f["employees"]) for f in firms.values()) == USERS


@pytest.mark.parametrize(
    ("name", "make"),
    [
        pytest.param(
            "rudder-sdk-python",
            lambda url, errors: rudder.Client(
                SDK_KEY,
                host=url,
                on_error=lambda error, batch: errors.append(error),
                upload_interval=0.05,
                upload_size=10,
            ),
            id="rudder-sdk-python",
        ),
        pytest.param(
            "segment-analytics-python",
            lambda url, errors: segment.Client(
                SDK_KEY,
                host=url,
                on_error=lambda error, batch: errors.append(error),
                upload_interval=0.05,
                upload_size=10,
                gzip=True,
            ),
            id="segment-analytics-python",
        ),
    ],
)
def test_an_official_sdk_delivers_every_event_in_order(
    sandbox: str, tmp_path: Path, name: str, make: Callable[[str, list[Any]], Any]
) -> None:
    ledger = tmp_path / "serve.sqlite"
    errors: list[Any] = []
    with service_in_thread(options(ledger, sandbox, write_keys=(SDK_KEY,))) as service:
        drive(make(service.url, errors), name.split("-")[0])
        assert errors == []
        check(service, sandbox, ledger, name.split("-")[0])


def test_an_sdk_hears_a_refused_write_key_as_code_and_message(sandbox: str, tmp_path: Path) -> None:
    errors: list[Any] = []
    with service_in_thread(options(tmp_path / "serve.sqlite", sandbox)) as service:
        client = rudder.Client(
            "not-the-key",
            host=service.url,
            on_error=lambda error, batch: errors.append(error),
            upload_interval=0.05,
            max_retries=1,
        )
        client.track("u1", "Paid", {"position": 1})
        client.flush()
        client.shutdown()
    assert len(errors) == 1
    assert errors[0].status == 401
    assert errors[0].code == "unauthorized"
    assert "write key" in errors[0].message
