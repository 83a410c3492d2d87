"""`send` never attempts an event before its `pending` row is committed (DELIVERY §4, issue 13
item 2): a disk that is full when events are stored sends nothing, and one that fills during
the run can only lose the outcomes of the requests in flight, which a re-run sends again.

The disk is filled for real, as in test_ledger_cannot_commit.py: the child runs under a small
`RLIMIT_FSIZE` (Python ignores SIGXFSZ, so a write past it fails with EFBIG), and "space
returns" when the test raises the limit of the running process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import (
    API_KEY,
    key_of,
    run_cli,
    sandbox_state,
    table_value,
    track_occurrences,
    write_config,
)
from test_ledger_cannot_commit import finish, start_child, when

from pipeline.delivery.ledger import Ledger
from pipeline.sandbox import SandboxOptions, serve_in_thread

# The ledger's largest file (its write-ahead log) may not pass this in the midway test: with
# 200-byte events that leaves room for the first burst and about 15 events after it.
LIMIT = 1_000_000


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_in_thread(SandboxOptions(api_key=API_KEY, latency_ms=20)) as url:
        yield url


def tracks(users: int, padding: int) -> list[str]:
    """An identify, then a track about `padding` bytes long, for each of `users` users."""
    lines: list[str] = []
    for n in range(users):
        lines.append(json.dumps({"type": "identify", "messageId": f"i{n}", "userId": f"u{n}"}))
        track = {
            "type": "track",
            "messageId": f"m{n}",
            "userId": f"u{n}",
            "event": "Filled",
            "properties": {"position": n, "pad": "x" * padding},
        }
        lines.append(json.dumps(track))
    return lines


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_a_disk_full_when_events_are_stored_sends_nothing(tmp_path: Path, sandbox: str) -> None:
    events = write(tmp_path / "fz.jsonl", tracks(150, 1_000))
    config = write_config(tmp_path / "config.json")
    ledger = tmp_path / "FZ.sqlite"
    args = ("send", events, "--config", config, "--ledger", ledger, "--base-url", sandbox)
    # The engine takes a first burst of events (16 per lane) before it sends any: committing
    # those one by one fills 150 KB of write-ahead log long before the burst is stored.
    child = start_child((*args, "--concurrency", "15"), file_limit=150_000)
    code, out, words = finish(child)
    assert code == 3, words
    assert "cannot commit" in words
    assert "re-run with the same --ledger to resume" in words
    assert "Traceback" not in words
    assert "filing the outcomes" not in words  # nothing finished waits to be filed
    assert track_occurrences(sandbox_state(sandbox)) == {}, "an event not stored was sent"
    assert table_value(out, "events sent this run") == "0"

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    final = track_occurrences(sandbox_state(sandbox))
    assert len(final) == 150
    assert set(final.values()) == {1}, "an event was sent twice"


def test_a_disk_that_fills_midway_loses_no_event_it_sent(tmp_path: Path, sandbox: str) -> None:
    events = write(tmp_path / "fz.jsonl", tracks(150, 200))
    config = write_config(tmp_path / "config.json")
    ledger = tmp_path / "FZ.sqlite"
    args = ("send", events, "--config", config, "--ledger", ledger, "--base-url", sandbox)
    # Two lanes take a first burst of 32 events, stored one commit each; then each outcome
    # and each next event commits, until the log is full.
    child = start_child((*args, "--concurrency", "2"), file_limit=LIMIT)
    started = time.monotonic()
    when(lambda: child.saw("cannot commit") or child.process.poll() is not None)
    time.sleep(1.0)  # the attempts in flight end; their outcomes wait to be filed
    sent = track_occurrences(sandbox_state(sandbox))
    assert sent, "the disk filled before anything was sent: nothing tested"
    with Ledger.open_reader(ledger) as book:
        stored = {row.key for row in book.rows()}
    keys = {key_of(f"m{n}") for (_, _, n) in sent}  # the tracks delivered
    assert keys <= stored, f"sent but never stored: {sorted(keys - stored)[:5]}"
    time.sleep(3.0)  # the run keeps trying to file them meanwhile
    child.give_space_back()
    code, out, words = finish(child)
    elapsed = time.monotonic() - started
    assert code == 3, words
    assert "re-run with the same --ledger to resume" in words
    shown = float(table_value(out, "time").removesuffix(" s"))
    assert shown >= 4.0, f"time {shown} s shown for a run of {elapsed:.1f} s"

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    final = track_occurrences(sandbox_state(sandbox))
    assert len(final) == 150
    assert set(final.values()) == {1}, "an event was sent twice"
