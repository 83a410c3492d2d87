"""The ledger of a running process is safe from other commands (issue 13 item 1): `--out` never
overwrites an SQLite database, one of its sidecars or a locked file, and the one-writer lock
follows the ledger's own inode, so a lock file removed or a ledger renamed lets no second
writer in.

Locks are a matter between processes, so the holder is a real `usercom serve` (or a small
Python child holding a POSIX lock); the refused commands run in-process where only their checks
are at stake.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import WRITE_KEY, post, service_process, track, write_config
from typer.testing import CliRunner, Result

from pipeline.cli import checks
from pipeline.cli.app import app
from pipeline.cli.checks import UsageError, not_the_ledger
from pipeline.delivery.ledger import Ledger, LedgerBusy

APP = "acme"
CLOSED = "http://127.0.0.1:9"  # nothing listens: a run that gets past its checks exits 3


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def refused(result: Result, words: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "ev.jsonl"
    lines = [
        json.dumps({"type": "track", "messageId": f"m{n}", "userId": "u", "event": "x"})
        for n in range(3)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.json")


# -- --out never overwrites a database --------------------------------------------------------


@pytest.mark.parametrize("name", ["L2.sqlite", "L2.sqlite-shm", "L2.sqlite-wal", "L2.sqlite.lock"])
def test_send_and_failed_never_overwrite_the_ledger_of_a_running_serve(
    tmp_path: Path, events: Path, config: Path, name: str
) -> None:
    ledger = tmp_path / "L2.sqlite"
    with service_process(
        "--config",
        config,
        "--ledger",
        ledger,
        "--base-url",
        CLOSED,
        "--write-key",
        WRITE_KEY,
        log=tmp_path / "log",
    ) as service:
        assert post(service.url, "/v1/track", track("u1", 1)).status_code == 200
        target = tmp_path / name
        assert target.exists()
        before = target.read_bytes()
        other = tmp_path / "other.sqlite"  # `failed` reads another ledger, writes to serve's
        with Ledger.open_writer(other, APP):
            pass
        sent = cli("send", events, "--config", config, "--out", target, "--base-url", CLOSED)
        refused(sent, "--out")
        refused(cli("failed", other, "--out", target), "--out")
        if name != "L2.sqlite-shm":  # SQLite itself rewrites its index as it goes
            assert target.read_bytes() == before
        assert post(service.url, "/v1/track", track("u1", 2)).status_code == 200
        assert service.process is not None
        assert service.process.poll() is None
    with Ledger.open_reader(ledger) as reader:  # intact (checked at open), both events kept
        assert sum(reader.counts().values()) == 2


def out_path(out: Path, events: str) -> Path:
    """`--out` as `send` checks it (with no --ledger): the path when it may be written."""
    checked = checks.out_path(out, events)
    assert checked is not None
    not_the_ledger(checked, None)
    return checked


def test_out_names_the_kind_of_file_it_refuses(tmp_path: Path, events: Path) -> None:
    database = tmp_path / "any.db"
    with Ledger.open_writer(database, APP):
        pass
    with pytest.raises(UsageError, match="is an SQLite database"):
        out_path(database, str(events))
    link = tmp_path / "outcomes.jsonl"
    link.symlink_to(database)
    with pytest.raises(UsageError, match=f"that is {database}"):
        out_path(link, str(events))
    plain = tmp_path / "notes.txt"
    plain.write_text("a text file\n")
    for sidecar in ("-wal", "-shm", "-journal", ".lock"):
        with pytest.raises(UsageError, match=f"is a file of the database .*its {sidecar}"):
            out_path(Path(f"{plain}{sidecar}"), str(events))
    # A name that only looks like a sidecar, and an ordinary existing file, are fine.
    assert out_path(tmp_path / "gone.sqlite-wal", str(events)) == tmp_path / "gone.sqlite-wal"
    assert out_path(plain, str(events)) == plain


@pytest.fixture
def posix_locked(tmp_path: Path) -> Iterator[Path]:
    """A plain file another process holds a POSIX lock on (as SQLite locks its files)."""
    path = tmp_path / "held.jsonl"
    path.write_text("{}\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'r+'); "
            "fcntl.lockf(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    try:
        yield path
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)


def test_out_refuses_a_file_another_process_holds_a_lock_on(
    posix_locked: Path, tmp_path: Path, events: Path
) -> None:
    with pytest.raises(UsageError, match="is locked by another process"):
        out_path(posix_locked, str(events))
    flocked = tmp_path / "flocked.jsonl"
    flocked.write_text("{}\n")
    fd = os.open(flocked, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        with pytest.raises(UsageError, match="is locked by another process"):
            out_path(flocked, str(events))
    finally:
        os.close(fd)
    assert out_path(flocked, str(events)) == flocked


# -- the one-writer lock follows the ledger's inode ---------------------------------------------


@pytest.fixture
def serving(tmp_path: Path, config: Path) -> Iterator[tuple[Path, int, str]]:
    """A `usercom serve` writing L.sqlite (one event stored): the ledger, its pid, its URL."""
    ledger = tmp_path / "L.sqlite"
    with service_process(
        "--config",
        config,
        "--ledger",
        ledger,
        "--base-url",
        CLOSED,
        "--write-key",
        WRITE_KEY,
        log=tmp_path / "log",
    ) as service:
        assert service.process is not None
        assert post(service.url, "/v1/track", track("u1", 1)).status_code == 200
        yield ledger, service.process.pid, service.url


def test_removing_the_lock_file_lets_no_second_writer_in(
    serving: tuple[Path, int, str], events: Path, config: Path
) -> None:
    ledger, pid, url = serving
    Path(f"{ledger}.lock").unlink()
    busy = f"ledger in use by pid {pid}"
    sent = cli("send", events, "--config", config, "--ledger", ledger, "--base-url", CLOSED)
    refused(sent, busy)
    with pytest.raises(LedgerBusy, match=busy):
        Ledger.open_writer(ledger, "acme")
    assert post(url, "/v1/track", track("u1", 2)).status_code == 200  # no 503: one writer
    with Ledger.open_reader(ledger) as reader:
        assert sum(reader.counts().values()) == 2


def test_renaming_the_ledger_lets_no_second_writer_in(
    serving: tuple[Path, int, str], events: Path, config: Path, tmp_path: Path
) -> None:
    ledger, pid, url = serving
    moved = tmp_path / "M.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger}{suffix}").rename(f"{moved}{suffix}")
    sent = cli("send", events, "--config", config, "--ledger", moved, "--base-url", CLOSED)
    refused(sent, f"ledger in use by pid {pid}")
    assert post(url, "/v1/track", track("u1", 2)).status_code == 200
    with Ledger.open_reader(moved) as reader:
        assert sum(reader.counts().values()) == 2


def test_a_writer_that_closed_lets_the_next_one_in(tmp_path: Path) -> None:
    path = tmp_path / "L.sqlite"
    first = Ledger.open_writer(path, APP)
    Path(f"{path}.lock").unlink()
    with pytest.raises(LedgerBusy):
        Ledger.open_writer(path, APP)
    first.close()
    with Ledger.open_writer(path, APP) as second:
        second.enqueue(f"{APP}:m1", "h1", b"{}")
