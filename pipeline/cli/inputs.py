"""What the commands read: the destination config and the events file."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from returns.result import Failure, Success

from pipeline.cli.checks import UsageError
from pipeline.cli.output import stderr
from pipeline.cli.plain import plain
from pipeline.core.config import Config, parse_config, unreadable_config


def load_config(path: Path) -> Config:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(unreadable_config(str(path), error)) from error
    config = raw.get("Config", raw) if isinstance(raw, dict) else raw
    match parse_config(config):
        case Success(Config() as cfg):
            for note in cfg.ignored:
                stderr().print(
                    plain(f"warning: config {path}: {note}"), highlight=False, markup=False
                )
            return cfg
        case Failure(problem):
            raise UsageError(f"config {path}: {problem.message}")
    raise UsageError(f"config {path}: not understood")


@contextlib.contextmanager
def open_source(events: str) -> Iterator[IO[bytes]]:
    if events == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = Path(events).open("rb")  # noqa: SIM115 - closed below; open errors are usage errors
    except OSError as error:
        raise UsageError(f"cannot read events {events}: {error.strerror}") from error
    with handle:
        yield handle


def count_events(events: str) -> int | None:
    """The total for the progress bar, when the input is a plain file we can read twice."""
    if events == "-":
        return None
    with Path(events).open("rb") as handle:
        if handle.peek(2)[:2] == b"\x1f\x8b":
            return None
        return sum(1 for line in handle if line.strip())
