"""Fixtures the service's tests share (a test file that needs another sandbox defines its own),
and the order the suite runs in."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from pg_server import NoPostgres, Server, throwaway_server
from serve_helpers import API_KEY

from pipeline.delivery.ledger import Ledger
from pipeline.delivery.pg import PgLocation
from pipeline.delivery.pg.ledger import Leasing, PgLedger
from pipeline.delivery.queue import DeliveryQueue
from pipeline.sandbox import SandboxOptions, serve_in_thread

# Files whose tests wait in real time (subprocesses, signals, Retry-After pauses, outages, a
# browser, a disk or a server to set up) or run long, some for tens of seconds each.
WAITING = (
    "test_e2e_",
    "test_serve_",
    "test_send_",
    "test_ledger_",
    "test_pg_",
    "test_queue_machine",
    "test_console_",
    "test_wire_network",
    "test_sandbox_cli",
    "test_readme_examples",
    "test_operator_commands",
    "test_d03_outage",
    "test_d03_stop_words",
    "test_d04_stop_starts_nothing",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deal the tests to the workers as `--dist worksteal` splits them (a contiguous share
    each), the waiting ones at the head of every share: each worker starts on its share of the
    long waits while the others keep the cores busy, no long test starts last, and what a
    worker finishes early it takes over from the tail of another's share (the quick tests)."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    waiting = [item for item in items if item.path.name.startswith(WAITING)]
    quick = [item for item in items if not item.path.name.startswith(WAITING)]
    shares = [waiting[n::workers] + quick[n::workers] for n in range(workers)]
    items[:] = [item for share in shares for item in share]


@pytest.fixture
def sandbox() -> Iterator[str]:
    """A sandbox in a thread that accepts the service tests' API key."""
    with serve_in_thread(SandboxOptions(api_key=API_KEY)) as url:
        yield url


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """Where the service under test keeps its ledger."""
    return tmp_path / "serve.sqlite"


class QueueOpener(Protocol):
    """Opens a new writable queue of `app`; `clock` stamps when events arrive and change."""

    def __call__(self, app: str, clock: Callable[[], float] = ...) -> DeliveryQueue: ...


@pytest.fixture(params=["sqlite", "postgres"])
def open_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueOpener]:
    """Opens a writable `DeliveryQueue` of an app, one per backend: the tests of the queue's
    contract run against each (PostgreSQL: a schema of the test's own on the test server)."""
    opened: list[DeliveryQueue] = []
    schema = f"q_{uuid.uuid4().hex[:16]}"

    def open_one(app: str, clock: Callable[[], float] = time.time) -> DeliveryQueue:
        if request.param == "sqlite":
            queue: DeliveryQueue = Ledger.open_writer(tmp_path / f"{app}.sqlite", app, clock=clock)
        elif request.param == "postgres":
            server: Server = request.getfixturevalue("pg_server")
            # Claims at every scan: the contract's takes follow each other within milliseconds.
            leasing = Leasing(claim_every=0.0)
            queue = PgLedger.open_pg_writer(PgLocation(server.uri, schema), app, leasing)
        else:
            raise LookupError(f"no queue backend {request.param!r}")
        opened.append(queue)
        return queue

    yield open_one
    for queue in opened:
        queue.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """This test process's throwaway PostgreSQL (tests/pg_server.py): a missing server binary
    fails the test with the install line, never skips it."""
    try:
        with throwaway_server() as server:
            yield server
    except NoPostgres as problem:
        pytest.fail(str(problem), pytrace=False)


@pytest.fixture
def pg_schema() -> str:
    """A schema of this test's own (`--pg-schema`), so tests sharing a server share nothing."""
    return f"t_{uuid.uuid4().hex[:16]}"
