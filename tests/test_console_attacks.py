"""The console under hostile requests (DELIVERY §8): what an unauthenticated client can
make the service hold, and what a signed-in one can make it do. Driven straight through
the ASGI interface, so that how much of a body the console reads is counted exactly."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from console_helpers import BEARER, console_options
from starlette.testclient import TestClient

from pipeline.console.auth import MAX_TRACKED, WRONG_TRIES, Gate
from pipeline.delivery.ledger import Ledger, LedgerError
from pipeline.serve import Service

CHUNK = 64 * 1024
CHUNKS = 1000  # a 64 MB body, if it were all read


class EndlessBody:
    """An ASGI `receive` that offers CHUNKS pieces of a body and counts those taken."""

    def __init__(self) -> None:
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        if self.taken >= CHUNKS:
            await asyncio.sleep(3600)  # a client that stays connected after its body
        self.taken += 1
        return {"type": "http.request", "body": b"t" * CHUNK, "more_body": self.taken < CHUNKS}


def post(service: Service, path: str, headers: dict[str, str], body: EndlessBody) -> int:
    """The status the console answers a POST of an endless body to `path` with."""
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(asyncio.wait_for(service.app(scope, body, send), 30))
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/console/signin", FORM),
        ("/console/", FORM),
        ("/console/replay", FORM),
        ("/console/signout", FORM),
        ("/console/api/requeue", {**BEARER, "content-type": "application/json"}),
    ],
)
def test_an_oversize_body_is_refused_413_without_reading_all_of_it(
    sandbox: str, ledger: Path, path: str, headers: dict[str, str]
) -> None:
    service = Service.open(console_options(ledger, sandbox))
    body = EndlessBody()
    assert post(service, path, headers, body) == 413
    assert body.taken * CHUNK <= 2 << 20, body.taken  # what it read stays near the limit


def test_wrong_tries_from_ever_new_addresses_are_not_remembered_without_bound() -> None:
    now = [0.0]
    gate = Gate("the-token", lambda: now[0])
    for n in range(3 * MAX_TRACKED):  # one wrong try from each of many addresses (IPv6 has plenty)
        now[0] += 0.01
        gate.sign_in(f"2001:db8::{n:x}", "wrong")
    assert len(gate.wrong) <= MAX_TRACKED
    for n in range(3 * MAX_TRACKED // WRONG_TRIES):  # and each one blocked
        for _ in range(WRONG_TRIES):
            now[0] += 0.001
            gate.sign_in(f"2001:db8:1::{n:x}", "wrong")
    assert len(gate.blocked_until) <= MAX_TRACKED
    assert gate.retry_after(f"2001:db8:1::{3 * MAX_TRACKED // WRONG_TRIES - 1:x}") is not None


def test_a_requeue_of_a_key_that_is_no_unicode_is_400_in_one_line(
    sandbox: str, ledger: Path
) -> None:
    service = Service.open(console_options(ledger, sandbox))
    with TestClient(service.app) as client:
        for body in (b'{"keys": ["\\ud800"]}', b'{"keys": ["acme:a\\udfff"], "app": "acme"}'):
            answer = client.post("/console/api/requeue", content=body, headers=BEARER)
            assert answer.status_code == 400, body
            assert "\n" not in answer.json()["message"]


def test_api_answers_and_refusals_are_never_cached_or_sniffed(sandbox: str, ledger: Path) -> None:
    service = Service.open(console_options(ledger, sandbox))
    with TestClient(service.app) as client:
        for path, headers in (
            ("/console/api/overview", BEARER),
            ("/console/api/events/acme%3Anone", BEARER),
            ("/console/api/failures", {}),
        ):
            answer = client.get(path, headers=headers)
            assert answer.headers.get("cache-control") == "no-store", path
            assert answer.headers.get("x-content-type-options") == "nosniff", path


def test_a_ledger_that_cannot_be_read_is_503_in_one_line_then_read_again(
    sandbox: str, ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL down: the console said 500 with a traceback in the log."""
    service = Service.open(console_options(ledger, sandbox))
    opened = service.reader

    def unreachable(app: str) -> Ledger:
        raise LedgerError("ledger postgresql://u:***@db/q: connection refused")

    monkeypatch.setattr(service, "reader", unreachable)
    with TestClient(service.app, raise_server_exceptions=False) as client:
        api = client.get("/console/api/overview", headers=BEARER)
        assert api.status_code == 503
        assert "connection refused" in api.json()["message"]
        assert "\n" not in api.json()["message"]
        page = client.get("/console/failures", headers=BEARER)
        assert page.status_code == 503
        assert "connection refused" in page.text
        monkeypatch.setattr(service, "reader", opened)  # the database is back
        assert client.get("/console/api/overview", headers=BEARER).status_code == 200
