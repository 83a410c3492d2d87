"""Run `usercom sandbox` in its own process for a benchmark, so it never shares our core."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sandbox_process(*flags: str) -> Iterator[str]:
    """Start a sandbox on a free port with the given flags; yield its base URL."""
    command = [sys.executable, "-m", "pipeline.cli", "sandbox", "--port", "0", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"sandbox did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        process.wait(10)
