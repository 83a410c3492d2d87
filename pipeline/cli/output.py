"""Where the commands write: refusals and progress on stderr, `--out` files opened lazily."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.text import Text

from pipeline.cli.checks import UsageError
from pipeline.cli.plain import plain


def refusal(problem: object) -> Text:
    """`error: PROBLEM` in red, the problem never read as rich markup (`[xN]` would vanish)."""
    return Text.assemble(("error:", "red"), f" {plain(str(problem))}")


def stderr() -> Console:
    """Progress, errors and (with `--out -`) the summary go to stderr, keeping stdout clean."""
    # soft_wrap: one problem stays one line in a CI log, however narrow the "terminal".
    return Console(stderr=True, soft_wrap=True)


@contextlib.contextmanager
def open_out(target: Path | None) -> Iterator[IO[str] | None]:
    """`--out`, opened only when the first outcome is written: a run refused before any
    event (a locked ledger, a wrong key) leaves an existing file as it was."""
    if target is None:
        yield None
    elif str(target) == "-":
        yield sys.stdout
    else:
        existed = target.exists()
        try:
            target.open("a", encoding="utf-8").close()  # can it be written? (changes nothing)
        except OSError as error:
            raise UsageError(f"cannot write --out {target}: {error.strerror}") from error
        sink = LazyFile(target)
        try:
            yield sink
        finally:
            sink.close()
            if not existed and sink.handle is None:
                target.unlink(missing_ok=True)


class LazyFile(io.StringIO):
    """A text sink that creates its file on the first write (then writes through)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.handle: IO[str] | None = None

    def write(self, text: str) -> int:
        if self.handle is None:
            try:
                self.handle = self.path.open("w", encoding="utf-8")
            except OSError as error:
                raise UsageError(f"cannot write --out {self.path}: {error.strerror}") from error
        return self.handle.write(text)

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        super().close()


@contextlib.contextmanager
def open_binary_out(target: Path | None) -> Iterator[IO[bytes]]:
    if target is None or str(target) == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        handle = target.open("wb")
    except OSError as error:
        raise UsageError(f"cannot write {target}: {error.strerror}") from error
    with handle:
        yield handle
