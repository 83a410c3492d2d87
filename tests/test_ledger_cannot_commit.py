"""A ledger that cannot commit (issue 13.2, 13.5): a full disk, an I/O error, a damaged file.

Filing an outcome that does not reach the disk must never turn into sending the event again.
The disk is filled for real: the child process runs under a small `RLIMIT_FSIZE` (Python
ignores SIGXFSZ, so a write past it fails with EFBIG and SQLite reports a disk I/O error), and
"space returns" when the test raises the limit of the running process (`prlimit`). The
children's stderr is a pipe, which the limit does not cover, so their words are read whole.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import select
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import (
    API_KEY,
    CLI,
    REPO,
    cli_env,
    key_of,
    run_cli,
    sandbox_state,
    track_occurrences,
    wait_until,
    write_config,
    write_lines,
)
from serve_helpers import API_KEY as SERVE_API_KEY
from serve_helpers import WRITE_KEY, auth, service_in_thread
from serve_helpers import health as serve_health
from serve_helpers import identify as serve_identify
from serve_helpers import options as serve_options
from serve_helpers import post as serve_post
from serve_helpers import track as serve_track
from serve_helpers import write_config as serve_config

from pipeline.delivery.ledger import Ledger
from pipeline.sandbox import SandboxOptions, serve_in_thread

UNLIMITED = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


@dataclass
class Child:
    """A `usercom` process whose stderr lines are collected as they come."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def text(self) -> str:
        return "".join(self.lines)

    def saw(self, words: str) -> bool:
        return words in self.text()

    def give_space_back(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # it ended already: the test says why
            resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE, UNLIMITED)


def start_child(args: Sequence[str | Path], file_limit: int | None) -> Child:
    """`python -m pipeline.cli ARGS`, no file written past `file_limit` bytes (when given)."""

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, resource.RLIM_INFINITY))

    process = subprocess.Popen(
        [*CLI, *(str(arg) for arg in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=cli_env(),
        cwd=REPO,
        preexec_fn=limit,  # only a resource limit, set before exec (no lock is held)
    )
    child = Child(process)

    def collect() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            child.lines.append(line)

    child.reader = threading.Thread(target=collect, daemon=True)
    child.reader.start()
    return child


def finish(child: Child, timeout: float = 60) -> tuple[int, str, str]:
    child.process.wait(timeout)  # stdout holds a summary table: far less than a pipe's buffer
    assert child.process.stdout is not None
    out = child.process.stdout.read()
    if child.reader is not None:
        child.reader.join(10)
    return child.process.returncode, out, child.text()


def users_and_tracks(users: int, tracks: int) -> list[str]:
    lines: list[str] = []
    for n in range(users):
        user = f"u{n}"
        lines.append(
            json.dumps(
                {
                    "type": "identify",
                    "messageId": f"{user}-identify",
                    "userId": user,
                    "traits": {"email": f"{user}@example.com"},
                }
            )
        )
        lines.extend(
            json.dumps(
                {
                    "type": "track",
                    "messageId": f"{user}-track-{t}",
                    "userId": user,
                    "event": "Product Viewed",
                    "properties": {"position": t},
                }
            )
            for t in range(tracks)
        )
    return lines


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_in_thread(SandboxOptions(api_key=API_KEY, latency_ms=20)) as url:
        yield url


def once_each(url: str) -> Counter[tuple[str, str, int]]:
    return track_occurrences(sandbox_state(url))


def when(check: Callable[[], object], timeout: float = 30) -> None:
    assert wait_until(check, timeout), "timed out"


def test_send_stops_with_exit_3_when_the_ledger_cannot_commit_and_never_sends_twice(
    tmp_path: Path, sandbox: str
) -> None:
    events = write_lines(tmp_path / "events.jsonl", users_and_tracks(6, 9))
    config = write_config(tmp_path / "config.json")
    ledger = tmp_path / "run.sqlite"
    args = ("send", events, "--config", config, "--ledger", ledger, "--base-url", sandbox)
    # A fresh ledger's WAL grows by a few pages per commit; the 60 events are stored pending
    # in one group commit before any is sent, then outcomes are committed in groups (issue
    # 18.2): 250 KB hold the pending rows and some outcomes (150-300 KB all fill mid-run).
    child = start_child(args, file_limit=250_000)
    when(lambda: child.saw("cannot commit") or child.process.poll() is not None)
    time.sleep(0.5)  # the attempts in flight end
    sent_while_full = once_each(sandbox)
    time.sleep(1.0)  # and no new one starts while the ledger cannot take outcomes
    assert once_each(sandbox) == sent_while_full
    child.give_space_back()
    code, _, words = finish(child)
    assert code == 3, words
    assert "Traceback" not in words
    assert "cannot commit" in words
    assert "re-run with the same --ledger" in words
    first = once_each(sandbox)
    assert first, "nothing was delivered before the disk filled"
    assert max(first.values()) == 1, first
    with Ledger.open_reader(ledger) as book:
        counts = book.counts()
        delivered_tracks = sum(1 for row in book.rows(["delivered"]) if "-track-" in row.key)
    assert counts["delivered"] < 60, "the disk filled too late to test anything"
    assert delivered_tracks == sum(first.values()), "an outcome delivered is not filed"

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    final = once_each(sandbox)
    assert sorted(final) == sorted(
        (f"u{n}", "Product Viewed", t) for n in range(6) for t in range(9)
    )
    assert set(final.values()) == {1}, final
    with Ledger.open_reader(ledger) as book:
        assert book.counts()["delivered"] == 60
        assert book.get(key_of("u0-track-8")) is not None


# -- the service ------------------------------------------------------------------------------


@dataclass
class Service:
    child: Child
    url: str

    def health(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/health", timeout=10)
        assert answer.status_code == 200, answer.text
        shown: dict[str, Any] = answer.json()
        return shown

    def post(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/batch", json=body, headers=auth(), timeout=30)


@contextlib.contextmanager
def service(args: Sequence[str | Path]) -> Iterator[Service]:
    child = start_child(("serve", "--port", "0", *args), file_limit=None)
    try:
        assert child.process.stdout is not None
        ready, _, _ = select.select([child.process.stdout], [], [], 20)
        assert ready, f"the service did not start: {child.text()}"
        first = child.process.stdout.readline().strip()
        prefix = "usercom serve listening on "
        assert first.startswith(prefix), f"{first!r}: {child.text()}"
        yield Service(child, first.removeprefix(prefix))
    finally:
        child.process.terminate()
        try:
            child.process.wait(20)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait(10)


def tracks(users: int, each: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        serve_track(f"s{n}", position)
        for n in range(users)
        for position in range(start, start + each)
    ]


def delivered(ledger: Path) -> int:
    with Ledger.open_reader(ledger) as book:
        return book.counts()["delivered"]


@pytest.fixture
def serve_sandbox() -> Iterator[str]:
    with serve_in_thread(SandboxOptions(api_key=SERVE_API_KEY)) as url:
        yield url


@pytest.fixture
def slow_sandbox() -> Iterator[str]:
    """Every request takes 0.4 s: outcomes come well after their events are admitted."""
    with serve_in_thread(SandboxOptions(api_key=SERVE_API_KEY, latency_ms=400)) as url:
        yield url


def test_serve_pauses_while_the_ledger_cannot_commit_and_delivers_each_event_once(
    tmp_path: Path, slow_sandbox: str
) -> None:
    config = serve_config(tmp_path / "config.json")
    ledger = tmp_path / "serve.sqlite"
    args = ("--config", config, "--ledger", ledger, "--base-url", slow_sandbox)
    with service((*args, "--write-key", WRITE_KEY)) as running:
        assert running.post({"batch": [serve_identify(f"s{n}") for n in range(5)]}).is_success
        when(lambda: delivered(ledger) == 5)
        assert running.post({"batch": tracks(5, 3)}).status_code == 200
        # The 15 tracks are committed; from now on the ledger cannot grow: the disk is full.
        wal = Path(f"{ledger}-wal").stat().st_size
        resource.prlimit(running.child.process.pid, resource.RLIMIT_FSIZE, (wal, UNLIMITED[1]))
        when(lambda: running.health()["paused"] is not None)
        shown = running.health()
        assert shown["status"] == "paused"
        assert "ledger" in shown["paused"]
        assert "cannot commit" in shown["paused"]
        refused = running.post({"batch": tracks(1, 1, start=3)})
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) > 0
        time.sleep(3)  # a storm would deliver each track many times meanwhile
        while_full = track_occurrences(sandbox_state(slow_sandbox))
        assert while_full, "nothing was delivered before the disk filled"
        assert max(while_full.values()) == 1, while_full
        assert running.health()["paused"] is not None
        assert "event=delivery_paused" in running.child.text()

        running.child.give_space_back()
        when(lambda: running.health()["paused"] is None and delivered(ledger) == 20, timeout=60)
        assert running.post({"batch": tracks(1, 1, start=3)}).status_code == 200
        when(lambda: delivered(ledger) == 21)
        assert "event=delivery_resumed" in running.child.text()
    final = track_occurrences(sandbox_state(slow_sandbox))
    expected = {("s0", "Product Viewed", p) for p in range(4)}
    expected |= {(f"s{n}", "Product Viewed", p) for n in range(1, 5) for p in range(3)}
    assert set(final) == expected
    assert set(final.values()) == {1}, final


def test_serve_pauses_when_ingest_cannot_commit_and_resumes_once_a_commit_works(
    tmp_path: Path, serve_sandbox: str
) -> None:
    config = serve_config(tmp_path / "config.json")
    ledger = tmp_path / "serve.sqlite"
    args: tuple[str | Path, ...] = ("--config", config, "--ledger", ledger)
    args += ("--base-url", serve_sandbox, "--write-key", WRITE_KEY)
    with service(args) as running:
        when(lambda: running.health()["status"] == "ok")
        wal = Path(f"{ledger}-wal").stat().st_size
        resource.prlimit(running.child.process.pid, resource.RLIMIT_FSIZE, (wal, UNLIMITED[1]))
        batch = {"batch": [serve_identify("i1"), serve_track("i1", 1)]}
        first = running.post(batch)
        assert first.status_code == 503
        assert int(first.headers["Retry-After"]) > 0
        when(lambda: running.health()["paused"] is not None)
        assert "cannot commit" in running.health()["paused"]
        again = running.post(batch)
        assert again.status_code == 503
        assert int(again.headers["Retry-After"]) > 0
        running.child.give_space_back()
        when(lambda: running.health()["paused"] is None)
        assert running.post(batch).status_code == 200
        when(lambda: delivered(ledger) == 2)
    words = running.child.text()
    assert words.count("event=delivery_paused") == 1, words
    assert "event=delivery_resumed" in words
    assert "Traceback" not in words


def damage_the_queue_index(ledger: Path) -> None:
    """Write garbage over the page of the index the service reads its queue through, once the
    WAL is checkpointed into the file (so the page is read from the file, not the WAL)."""
    with contextlib.closing(sqlite3.connect(ledger)) as db:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'events_status_position'"
        ).fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    with ledger.open("r+b") as handle:
        handle.seek((root - 1) * size)
        handle.write(b"\xde\xad" * (size // 2))


def test_a_ledger_damaged_while_serving_pauses_with_the_reason_and_ingest_503(
    tmp_path: Path, serve_sandbox: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = tmp_path / "serve.sqlite"
    with (
        caplog.at_level(logging.INFO, logger="usercom.serve"),
        service_in_thread(serve_options(ledger, serve_sandbox)) as running,
    ):
        first = {"batch": [serve_identify("d1"), serve_track("d1", 1)]}
        assert serve_post(running.url, "/v1/batch", first).status_code == 200
        when(lambda: delivered(ledger) == 2)
        damage_the_queue_index(ledger)
        # A client's retry of a stored event reads no queue page: answered 200, and the
        # delivery loop, woken, reads the damaged page.
        assert serve_post(running.url, "/v1/batch", first).status_code == 200
        when(lambda: serve_health(running.url)["paused"] is not None, timeout=10)
        shown = serve_health(running.url)
        assert shown["status"] == "paused"
        assert "damaged" in shown["paused"]
        assert "malformed" in shown["paused"]
        refused = serve_post(running.url, "/v1/batch", {"batch": [serve_track("d1", 2)]})
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) > 0
        time.sleep(3)  # a ledger that stays damaged: paused still, said once, not every round
        assert serve_health(running.url)["paused"] == shown["paused"]
        lines = [record.getMessage() for record in caplog.records]
        assert sum("event=delivery_paused" in line for line in lines) == 1, lines
        assert not [line for line in lines if "event=delivery_error" in line]
