"""The ledger file itself (issue 13 items 1, 5, 14; issue 14 items 9, 10): one writer per real
file whatever name reaches it, a damaged file refused at open, read-only places readable, and
`--out` kept off every file the ledger or the config owns.

The commands run in-process (typer's CliRunner); only the read-only folder needs a process of
its own, run as another user when the tests run as root (root writes through any chmod).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_helpers import REPO, cli_env, write_config
from typer.testing import CliRunner, Result

from pipeline.cli import checks
from pipeline.cli.app import app
from pipeline.cli.checks import UsageError
from pipeline.delivery import ledger as ledger_module
from pipeline.delivery.ledger import Ledger, LedgerError, Status, ledger_files

APP = "acme"
NOBODY = 65534
CLOSED = "http://127.0.0.1:9"  # nothing listens: a run that gets past its ledger exits 3


def event_line(n: int) -> bytes:
    event = {"type": "track", "messageId": f"m{n}", "userId": f"u{n % 7}", "event": "x" * 200}
    return json.dumps(event).encode()


def make_ledger(path: Path, events: int = 6) -> Path:
    """A closed ledger of `events` events: every third failed, the others delivered."""
    with Ledger.open_writer(path, APP) as ledger:
        for n in range(events):
            ledger.enqueue(f"{APP}:m{n}", f"h{n}", event_line(n))
        for n in range(events):
            status: Status = "failed" if n % 3 == 0 else "delivered"
            ledger.record(f"{APP}:m{n}", status, 1, ["POST /events/ -> 500"], None, [])
    return path


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def refused(result: Result, words: str) -> str:
    """The one line of a refusal (exit 2), checked to contain `words`."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(event_line(n) for n in range(3)) + b"\n")
    return {"events": events, "config": write_config(tmp_path / "config.json")}


def send_with(files: dict[str, Path], *extra: str | Path) -> Result:
    return cli("send", files["events"], "--config", files["config"], "--base-url", CLOSED, *extra)


# -- one writer per real file (13.1) -----------------------------------------------------------


def test_a_symlink_to_a_held_ledger_gets_no_second_writer(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    real = make_ledger(tmp_path / "real.sqlite")
    link = tmp_path / "link.sqlite"
    link.symlink_to(real)
    busy = f"ledger in use by pid {os.getpid()}"
    with Ledger.open_writer(real, APP):
        with pytest.raises(LedgerError, match=busy):
            Ledger.open_writer(link, APP)
        refused(send_with(files, "--ledger", link), busy)
        refused(cli("requeue", link), busy)
        refused(cli("serve", "--config", files["config"], "--ledger", link, "--port", "0"), busy)
    with Ledger.open_reader(link) as reader:  # nothing was filed through the link
        assert reader.counts()["pending"] == 0


def test_a_ledger_with_a_second_hard_link_is_refused(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    real = make_ledger(tmp_path / "real.sqlite")
    other = tmp_path / "other.sqlite"
    with Ledger.open_writer(real, APP):  # a writer holds it; then a second name appears
        os.link(real, other)
        line = refused(send_with(files, "--ledger", other), "has 2 hard links")
        assert "remove the other" in line
        assert f"-xdev -samefile {other}" in line
    before = sha256(real)
    openers: list[Callable[[], Ledger]] = [
        lambda: Ledger.open_writer(real, APP),
        lambda: Ledger.open_writer(other, APP),
        lambda: Ledger.open_reader(other),
    ]
    for open_it in openers:
        with pytest.raises(LedgerError, match="has 2 hard links"):
            open_it()
    assert sha256(real) == before
    other.unlink()
    with Ledger.open_writer(real, APP) as ledger:  # one name again: usable
        assert ledger.counts()["failed"] == 2


@pytest.mark.parametrize("sidecar", ["-wal", "-shm", "-journal", ".lock"])
def test_out_is_refused_on_every_file_of_the_ledger(tmp_path: Path, sidecar: str) -> None:
    ledger = tmp_path / "run.sqlite"
    with pytest.raises(UsageError, match="--out is the ledger"):
        checks.not_the_ledger(Path(f"{ledger}{sidecar}"), ledger)


def test_out_is_refused_on_the_real_files_behind_a_symlinked_ledger(tmp_path: Path) -> None:
    real = make_ledger(tmp_path / "real.sqlite")
    link = tmp_path / "link.sqlite"
    link.symlink_to(real)
    for out in (real, Path(f"{real}-wal"), Path(f"{real}.lock")):
        with pytest.raises(UsageError, match="--out is the ledger"):
            checks.not_the_ledger(out, link)
    checks.not_the_ledger(tmp_path / "outcomes.jsonl", link)  # any other file is fine


def test_send_and_failed_refuse_out_on_the_wal(tmp_path: Path, files: dict[str, Path]) -> None:
    ledger = make_ledger(tmp_path / "run.sqlite")
    refused(send_with(files, "--ledger", ledger, "--out", f"{ledger}-wal"), "--out is the ledger")
    refused(cli("failed", ledger, "--out", f"{ledger}-wal"), "--out is the ledger")
    assert not Path(f"{ledger}-wal").exists()


# -- a damaged ledger (13.5, file side) --------------------------------------------------------


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A ledger of 300 events whose third-last page is overwritten with garbage (its header,
    schema and meta rows intact, so it still looks like a ledger of ours)."""
    path = make_ledger(tmp_path / "damaged.sqlite", events=300)
    page = 4096
    pages = path.stat().st_size // page
    assert pages > 10
    with path.open("r+b") as handle:
        handle.seek((pages - 3) * page)
        handle.write(bytes([0xA5]) * page)
    return path


def test_a_damaged_ledger_is_refused_at_open_and_left_untouched(damaged: Path) -> None:
    before = sha256(damaged)
    openers: list[Callable[[], Ledger]] = [
        lambda: Ledger.open_reader(damaged),
        lambda: Ledger.open_writer(damaged, APP),
    ]
    for open_it in openers:
        with pytest.raises(LedgerError, match="is damaged"):
            open_it()
    assert sha256(damaged) == before


def test_every_command_refuses_a_damaged_ledger_in_one_line(
    damaged: Path, files: dict[str, Path]
) -> None:
    for result in (
        send_with(files, "--ledger", damaged),
        cli("serve", "--config", files["config"], "--ledger", damaged, "--port", "0"),
        cli("report", damaged),
        cli("failed", damaged),
        cli("explain", "m3", "--ledger", damaged),
        cli("requeue", damaged),
    ):
        line = refused(result, f"ledger {damaged} is damaged")
        assert "backup" in line


def test_damage_the_check_at_open_misses_is_one_line_too(
    damaged: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Damage `quick_check` cannot see (an index that disagrees with its table, or a page
    damaged after the check) surfaces midway through a command: still one line, exit 2."""
    monkeypatch.setattr(ledger_module, "_check_intact", lambda _db, _path: None)
    for result in (
        cli("report", damaged),
        cli("failed", damaged),
        cli("requeue", damaged),
    ):
        refused(result, f"ledger {damaged} is damaged")


# -- read-only places (13.14) ------------------------------------------------------------------


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="usercom-ro-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def as_reader(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`usercom ARGS` run by a user who cannot write the shared folder: this user when it is
    not root, else `nobody` (for root, chmod stops nothing)."""
    drop = (
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        if os.geteuid() == 0
        else []
    )
    return subprocess.run(
        [*drop, sys.executable, "-m", "pipeline.cli", *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        env={**cli_env(), "PYTHONPATH": str(REPO), "HOME": "/"},
        cwd="/",
        timeout=60,
        check=False,
    )


def test_reading_commands_work_on_a_ledger_in_a_read_only_folder(shared_folder: Path) -> None:
    ledger = make_ledger(shared_folder / "run.sqlite")
    Path(f"{ledger}.lock").unlink()
    shared_folder.chmod(0o555)
    report = as_reader("report", ledger, "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["counts"]["failed"] == 2
    failed = as_reader("failed", ledger)
    assert failed.returncode == 0, failed.stderr
    assert failed.stdout.encode() == event_line(0) + b"\n" + event_line(3) + b"\n"
    explain = as_reader("explain", "m3", "--ledger", ledger)
    assert explain.returncode == 0, explain.stderr
    assert "failed" in explain.stdout
    assert sorted(p.name for p in shared_folder.iterdir()) == ["run.sqlite"]


def test_unmerged_changes_in_a_read_only_folder_are_one_line(shared_folder: Path) -> None:
    """A -wal that holds commits the main file lacks, no -shm, and a folder the reader cannot
    write: reading the main file alone would show an old state, so it says so instead."""
    ledger = make_ledger(shared_folder / "run.sqlite")
    wal = Path(f"{ledger}-wal")
    copy = shared_folder / "copy.sqlite"
    with Ledger.open_writer(ledger, APP) as writer:  # commits that stay in the -wal
        writer.enqueue(f"{APP}:late", "h", b"{}")
        writer.flush()
        shutil.copyfile(ledger, copy)
        shutil.copyfile(wal, f"{copy}-wal")
    for name in shared_folder.iterdir():
        if not name.name.startswith("copy."):
            name.unlink()
    shared_folder.chmod(0o555)
    result = as_reader("report", copy)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "writable folder" in lines[0]


# -- where a ledger cannot be (14.9) and what --out may not name (14.10) -----------------------


def test_a_folder_that_takes_no_files_is_named_with_the_fix(files: dict[str, Path]) -> None:
    line = refused(send_with(files, "--ledger", "/proc/x.sqlite"), "/proc/x.sqlite")
    assert "No such file or directory" not in line.split(":", 1)[0]
    assert "cannot create files in /proc" in line
    assert "choose a --ledger in a folder you can write" in line


def test_a_folder_this_user_cannot_write_is_named_with_the_fix(shared_folder: Path) -> None:
    ledger = make_ledger(shared_folder / "run.sqlite")
    Path(f"{ledger}.lock").unlink()
    shared_folder.chmod(0o555)
    result = as_reader("requeue", ledger)  # reads fine, then needs the writer's lock
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"cannot create files in {shared_folder} (this user may not write there)" in lines[0]
    assert sorted(p.name for p in shared_folder.iterdir()) == ["run.sqlite"]


def test_out_may_not_name_the_config(files: dict[str, Path], tmp_path: Path) -> None:
    before = files["config"].read_bytes()
    alias = tmp_path / "alias.json"
    alias.symlink_to(files["config"])
    for out in (files["config"], alias):
        line = refused(send_with(files, "--out", out), "--out is the config file")
        assert "API key" in line
    assert files["config"].read_bytes() == before


def test_git_ignores_every_file_a_ledger_leaves_in_the_checkout() -> None:
    """A ledger kept in the checkout (`--ledger run.sqlite`) shows up in no `git status`: the
    file, its lock and SQLite's sidecars are all ignored (names from the ledger itself)."""
    for name in ("run.sqlite", "send.db"):
        owned = [str(path.relative_to(REPO)) for path in ledger_files(REPO / name)]
        shown = subprocess.run(
            ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *owned],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        verdicts = shown.stdout.splitlines()
        assert len(verdicts) == len(owned), shown.stderr
        assert not [line for line in verdicts if line.startswith("::")], shown.stdout
