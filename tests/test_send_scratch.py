"""`usercom send` keeps this run's scratch files (the messageIds read, the ledger without
--ledger) in one private folder of TMPDIR; a TMPDIR it cannot use is one line, exit 2, before
anything is read, sent or written.

In process: typer's CliRunner runs `send` (its `env=` sets TMPDIR) against a sandbox in a thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_helpers import write_config, write_lines
from typer.testing import CliRunner, Result

from pipeline.cli.app import app
from pipeline.sandbox import SandboxOptions, serve_in_thread

EVENTS = [
    json.dumps({"type": "identify", "messageId": "m1", "userId": "s1"}),
    json.dumps({"type": "identify", "messageId": "m2", "userId": "s2"}),
]


@pytest.fixture
def sandbox() -> Iterator[str]:
    with serve_in_thread(SandboxOptions()) as url:
        yield url


def requests_made(url: str) -> int:
    count: int = httpx.get(f"{url}/__sandbox__/state").json()["request_count"]
    return count


def send(tmp_path: Path, sandbox: str, tmpdir: Path, *extra: str) -> Result:
    events = write_lines(tmp_path / "events.jsonl", EVENTS)
    config = write_config(tmp_path / "config.json")
    args = ["send", str(events), "--config", str(config), "--base-url", sandbox, *extra]
    return CliRunner().invoke(app, args, env={"TMPDIR": str(tmpdir), "COLUMNS": "200"})


@pytest.mark.parametrize("kind", ["missing", "a file"])
@pytest.mark.parametrize(
    "flags", [(), ("--ledger",), ("--dry-run",), ("--dry-run", "--live")], ids=str
)
def test_a_tmpdir_that_cannot_be_used_is_one_line_and_exit_2_before_anything_is_sent(
    tmp_path: Path, sandbox: str, kind: str, flags: tuple[str, ...]
) -> None:
    tmpdir = tmp_path / "no-such-folder"
    if kind == "a file":
        tmpdir = tmp_path / "a-file"
        tmpdir.write_text("not a folder")
    ledger = tmp_path / "send.sqlite"
    out = tmp_path / "out.jsonl"
    extra = [*(("--ledger", str(ledger)) if "--ledger" in flags else flags), "--out", str(out)]
    result = send(tmp_path, sandbox, tmpdir, *extra)
    assert result.exit_code == 2, result.output
    reason = "No such file or directory" if kind == "missing" else "Not a directory"
    assert result.stderr.strip() == (
        f"error: cannot make this run's scratch folder in {tmpdir} (TMPDIR): {reason}; "
        "set TMPDIR to a writable folder"
    )
    assert requests_made(sandbox) == 0
    assert not ledger.exists()
    assert not out.exists()


def test_the_scratch_files_live_in_tmpdir_and_go_when_the_run_ends(
    tmp_path: Path, sandbox: str
) -> None:
    tmpdir = tmp_path / "scratch"
    tmpdir.mkdir()
    out = tmp_path / "out.jsonl"
    result = send(tmp_path, sandbox, tmpdir, "--out", str(out))
    assert result.exit_code == 0, result.output
    outcomes = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [outcome["status"] for outcome in outcomes] == ["delivered", "delivered"]
    assert list(tmpdir.iterdir()) == []
