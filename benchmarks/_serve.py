"""Run `usercom serve` in its own process for a benchmark; yield its URL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

WRITE_KEY = "bench-write-key"
API_KEY = "bench-SECRET-key-0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
CONFIG = {"apiKey": API_KEY, "appSubdomain": "bench"}


def write_config(folder: Path) -> Path:
    path = folder / "config.json"
    path.write_text(json.dumps(CONFIG))
    return path


@contextmanager
def serve_process(
    folder: Path, base_url: str, *flags: str, log: IO[str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`usercom serve` with a fresh config in `folder`, its ledger `folder/serve.sqlite`."""
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "serve",
        "--config",
        str(write_config(folder)),
        "--ledger",
        str(folder / "serve.sqlite"),
        "--port",
        "0",
        "--write-key",
        WRITE_KEY,
        "--base-url",
        base_url,
        *flags,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the service did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip(), process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
