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
import resource
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    # A fresh ledger's WAL grows by a few pages per commit: 96 KB are full after a few events.
    child = start_child(args, file_limit=96 * 1024)
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
