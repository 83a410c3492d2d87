"""`usercom serve` admission rules (issue 13 items 7, 12; issue 14 item 5): a cap on events per
request, one rule for a messageId repeated with other content, a page without `timestamp`.

The service runs in a thread in front of a sandbox, both on loopback sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import (
    API_KEY,
    ledger_counts,
    options,
    post,
    service_in_thread,
    track,
)

from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.serve import ServeOptions


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        yield url


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "serve.sqlite"


def test_the_default_cap_is_10000_events_per_request(ledger: Path) -> None:
    assert options(ledger, None).max_events == 10_000
    assert ServeOptions.__dataclass_fields__["max_events"].default == 10_000


@pytest.mark.parametrize("path", ["/v1/batch", "/webhook"])
def test_a_request_over_the_event_cap_is_413_and_stores_nothing(
    sandbox: str, ledger: Path, path: str
) -> None:
    with service_in_thread(options(ledger, sandbox, max_events=20)) as service:
        events = [track("u1", n) for n in range(21)]
        answer = post(service.url, path, {"batch": events} if path == "/v1/batch" else events)
        assert answer.status_code == 413
        assert answer.json() == {
            "code": "too_many_events",
            "message": "the request holds 21 events, over the limit of 20 per request: "
            "send smaller batches",
        }
        assert sum(ledger_counts(ledger).values()) == 0
        within = post(
            service.url, path, {"batch": events[:20]} if path == "/v1/batch" else events[:20]
        )
        assert within.status_code == 200, within.text
        assert within.json()["events"] == 20
