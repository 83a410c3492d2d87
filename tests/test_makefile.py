"""The Makefile a new user runs first (issue 14.17): a quiet first build, no ASCII-art banner.

`make` is a process, so these run it, with a stand-in Python where the real install would
take minutes: it "installs" by printing what pip and setuptools print, then exits as told.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BANNER = "Editable install will be performed using a meta path finder."
STAND_IN = f"""#!/bin/sh
# `python -m venv DIR` makes DIR/bin/python: this same script, which then plays pip.
if [ "$1 $2" = "-m venv" ]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0
fi
echo "{BANNER}" >&2
exit "${{FAIL_INSTALL:-0}}"
"""


def make(tmp_path: Path, *targets: str, fail: bool = False) -> subprocess.CompletedProcess[str]:
    python = tmp_path / "python"
    python.write_text(STAND_IN, encoding="utf-8")
    python.chmod(0o755)
    return subprocess.run(
        ["make", "--no-print-directory", f"PYTHON={python}", f"VENV={tmp_path / 'venv'}", *targets],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "FAIL_INSTALL": "1" if fail else "0"},
    )


def test_the_first_build_prints_one_line_and_keeps_the_banner_in_a_log(tmp_path: Path) -> None:
    done = make(tmp_path, str(tmp_path / "venv" / ".installed"))
    assert done.returncode == 0, done.stdout + done.stderr
    log = tmp_path / "venv" / "install.log"
    assert done.stdout.splitlines() == [
        f"installing usercom-pipeline[dev,cli] into {tmp_path / 'venv'} (log: {log})"
    ]
    assert done.stderr == ""
    assert BANNER in log.read_text(encoding="utf-8")


def test_a_failed_build_shows_the_log_and_fails(tmp_path: Path) -> None:
    done = make(tmp_path, str(tmp_path / "venv" / ".installed"), fail=True)
    assert done.returncode != 0
    assert BANNER in done.stdout
    assert f"install failed: see {tmp_path / 'venv' / 'install.log'}" in done.stdout
    assert not (tmp_path / "venv" / ".installed").exists()


def test_the_import_contracts_print_no_ascii_art() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "imports"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kept, 0 broken" in done.stdout
    assert not any(char in done.stdout for char in "╔╗╚╝▶◀")
