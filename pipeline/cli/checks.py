"""Checks of `usercom send`'s options, done before anything is read or sent (DELIVERY §4).

Each function returns the normalized value or raises ``UsageError`` whose message is the one
line to print (exit 2): it names the option, the problem and the fix, and quotes what was given.
Only the standard library is used, so the checks run without the `cli` extra.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import math
import os
import re
import stat
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal, TypeVar

from pipeline.delivery.ledger import LOCK_SUFFIX, SQLITE_MAGIC, SQLITE_SIDECARS, ledger_files

MAX_CONCURRENCY = 1024
MAX_PORT = 65535
ORIGIN_LIKE = "https://host[:port]"
STDIO = "-"
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class UsageError(Exception):
    """A bad command-line value: ``str(error)`` is the one line to print before exiting 2."""


def origin(raw: str) -> str:
    """``--base-url``: an http(s) origin (host and optional port, no path), without a final ``/``.

    >>> origin("HTTP://Sandbox:8000/"), origin("http://[::1]:8000")
    ('http://sandbox:8000', 'http://[::1]:8000')
    >>> origin("http://127.0.0.1:8000/api/public")
    Traceback (most recent call last):
    ...
    pipeline.cli.checks.UsageError: --base-url must be an origin like https://host[:port], with no path (/api/public is added for you): got 'http://127.0.0.1:8000/api/public'
    """  # noqa: E501

    def refuse(problem: str) -> UsageError:
        return UsageError(
            f"--base-url must be an origin like {ORIGIN_LIKE}, {problem}: got {raw!r}"
        )

    if not raw or any(char.isspace() or not char.isprintable() for char in raw):
        raise refuse("with no spaces or control characters")
    scheme, separator, rest = raw.partition("://")
    if not separator:
        raise refuse("starting with http:// or https://")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise refuse("with the scheme http or https")
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    after = rest[len(netloc) :]
    if "@" in netloc:
        raise refuse("with no user name or password (the API key comes from the config)")
    host, port = _host_and_port(netloc, refuse)
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= MAX_PORT):
        raise refuse(f"with a port from 1 to {MAX_PORT}")
    path = re.split(r"[?#]", after, maxsplit=1)[0]
    if path not in ("", "/"):
        raise refuse("with no path (/api/public is added for you)")
    if "?" in after:
        raise refuse("with no query")
    if "#" in after:
        raise refuse("with no fragment")
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def _host_and_port(netloc: str, refuse: Callable[[str], UsageError]) -> tuple[str, str | None]:
    """The (lower-cased, IPv6 bracketed) host and the port text of a ``host[:port]``."""
    if not netloc:
        raise refuse("with a host")
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise refuse("with the IPv6 address closed by ']', like http://[::1]:8000")
        try:
            address = ipaddress.IPv6Address(netloc[1:end])
        except ValueError:
            raise refuse("with a valid IPv6 address in brackets, like http://[::1]:8000") from None
        tail = netloc[end + 1 :]
        if tail and not tail.startswith(":"):
            raise refuse("with only ':port' after the IPv6 address")
        return f"[{address.compressed}]", (tail[1:] if tail else None)
    host, colon, port = netloc.partition(":")
    if ":" in port:
        raise refuse("with an IPv6 address in brackets, like http://[::1]:8000")
    if not _valid_host(host):
        raise refuse("with a valid host name")
    return host.lower(), (port if colon else None)


def _valid_host(host: str) -> bool:
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return False
    labels = ascii_host.removesuffix(".").split(".")
    return 0 < len(ascii_host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def rate(raw: float | None) -> float | None:
    """``--rate``: requests per second, a finite number > 0 (``None``: adaptive, no cap).

    >>> rate(2.5), rate(None)
    (2.5, None)
    >>> rate(float("inf"))
    Traceback (most recent call last):
    ...
    pipeline.cli.checks.UsageError: --rate must be a finite number of requests per second > 0, like 10: got inf
    """  # noqa: E501
    if raw is None:
        return None
    if not (math.isfinite(raw) and raw > 0):
        raise UsageError(
            f"--rate must be a finite number of requests per second > 0, like 10: got {raw!r}"
        )
    return float(raw)


def concurrency(raw: int) -> int:
    """``--concurrency``: users delivered at once, an integer 1..1024.

    >>> concurrency(8)
    8
    """
    if isinstance(raw, bool) or not 1 <= raw <= MAX_CONCURRENCY:
        raise UsageError(
            f"--concurrency must be an integer from 1 to {MAX_CONCURRENCY}: got {raw!r}"
        )
    return raw


def out_path(out: Path | None, events: str, config: Path | None = None) -> Path | None:
    """``--out``: ``-`` (stdout), or a file that is not the input nor the config (which holds
    the API key) and whose folder is writable.

    >>> out_path(Path("-"), "events.jsonl"), out_path(None, "-")
    (PosixPath('-'), None)
    """
    if out is None or str(out) == STDIO:
        return out
    if out.is_dir():
        raise UsageError(f"--out is a folder: give a file path, like {out / 'outcomes.jsonl'}")
    if events != STDIO and _same_file(out, Path(events)):
        raise UsageError(
            f"--out is the input file {events!r}: writing it would destroy the events; "
            "choose another path"
        )
    if config is not None and _same_file(out, config):
        raise UsageError(
            f"--out is the config file {str(config)!r}, which holds the API key: writing it "
            "would destroy the config and put outcomes where the key is; choose another path"
        )
    folder = _existing_folder("--out", out)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out's folder is not writable: {str(folder)!r}")
    if out.exists() and not os.access(out, os.W_OK):
        raise UsageError(f"--out exists and is not writable: {str(out)!r}")
    return out


def not_a_database(out: Path | None) -> None:
    """`--out` never overwrites an SQLite database, one of SQLite's sidecars or a file another
    process holds a lock on (symlinks resolved): it may be the ledger of a running `serve`,
    which a truncation destroys ("file is not a database") and a shrunk `-shm` kills (SIGBUS).
    Checked without knowing which ledger is in use, since the one at risk is often not ours.
    """
    if out is None or str(out) == STDIO:
        return
    real = Path(os.path.realpath(out))
    shown = str(out) if real == Path(os.path.abspath(out)) else f"{str(out)!r} (that is {real})"
    if _starts_as_sqlite(real):
        raise UsageError(
            f"--out {shown} is an SQLite database (a ledger?): writing it would destroy it; "
            "choose another path"
        )
    owner = _sidecar_owner(real)
    if owner is not None:
        raise UsageError(
            f"--out {shown} is a file of the database {owner} (its {real.name[len(owner.name) :]}"
            "): writing it would corrupt that database; choose another path"
        )
    if _locked(real):
        raise UsageError(
            f"--out {shown} is locked by another process, which is using it: "
            "writing it would destroy what it holds; choose another path"
        )


def _starts_as_sqlite(path: Path) -> bool:
    with contextlib.suppress(OSError):
        if stat.S_ISREG(path.stat().st_mode):
            with path.open("rb") as handle:
                return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    return False


def _sidecar_owner(path: Path) -> Path | None:
    """The existing file X when `path` is X-wal, X-shm, X-journal or X.lock."""
    for suffix in (*SQLITE_SIDECARS, LOCK_SUFFIX):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            owner = path.with_name(path.name[: -len(suffix)])
            if owner.exists():
                return owner
    return None


# struct flock on Linux (x86-64, arm64): type and whence (short), start and len (off_t), pid.
_FLOCK: Final = "hhxxxxqqi4x"


def _locked(path: Path) -> bool:
    """Whether another process holds an flock, or a POSIX or OFD lock (SQLite's), on `path`.
    Safe here: this process holds no POSIX lock that closing the probing descriptor drops."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return False  # missing or unreadable: nothing to probe (writing it is checked later)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as problem:
            if problem.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        if sys.platform != "linux":
            return False
        asked = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        try:
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, asked)
        except OSError:
            return False
        held: int = struct.unpack(_FLOCK, answer)[0]
        return held != fcntl.F_UNLCK
    finally:
        os.close(fd)


def _same_file(one: Path, other: Path) -> bool:
    try:
        if one.exists() and other.exists():
            return os.path.samefile(one, other)
        return one.resolve() == other.resolve()
    except OSError:
        return False


def ledger_path(path: Path | None) -> Path | None:
    """``--ledger``: a file path (existing or not) whose folder exists.

    >>> ledger_path(None) is None
    True
    """
    if path is None:
        return None
    if path.is_dir():
        raise UsageError(f"--ledger is a folder: give a file path, like {path / 'send.ledger'}")
    _existing_folder("--ledger", path)
    return path


def _existing_folder(option: str, path: Path) -> Path:
    """The folder ``path`` would be created in; ``UsageError`` when it is not a folder."""
    folder = Path(os.path.abspath(path)).parent
    if folder.is_dir():
        return folder
    if folder.exists():
        raise UsageError(f"{option}'s folder is a file, not a folder: {str(folder)!r}")
    raise UsageError(f"{option}'s folder does not exist: {str(folder)!r} (create it first)")


def events_source(raw: str) -> str:
    """EVENTS: ``-`` (stdin) or an existing, readable regular file.

    >>> events_source("-")
    '-'
    """
    if raw == STDIO:
        return raw
    path = Path(raw)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UsageError(
            f"EVENTS file not found: {raw!r} (give a JSONL file, or - for stdin)"
        ) from None
    except OSError as error:
        raise UsageError(f"EVENTS cannot be read: {raw!r}: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"EVENTS is a folder, not a file: {raw!r} (give a JSONL file)")
    if not stat.S_ISREG(mode):
        raise UsageError(
            f"EVENTS is not a regular file: {raw!r} (for a pipe or a stream, give - and use stdin)"
        )
    if not os.access(path, os.R_OK):
        raise UsageError(f"EVENTS is not readable: {raw!r}")
    return raw


def port(raw: int) -> int:
    """A TCP port to listen on: 0 (any free one) to 65535."""
    if not 0 <= raw <= 65535:
        raise UsageError(f"--port must be from 0 to 65535 (0 picks a free one): got {raw}")
    return raw


def not_the_ledger(out: Path | None, ledger: Path | None) -> None:
    """`--out` must not name the ledger nor any file it owns (its lock, SQLite's -wal, -shm and
    -journal, under its name or the real one behind a symlink): SQLite replays or deletes its
    sidecars, so outcomes written there would corrupt the ledger or vanish. Nor any other
    ledger or database (`not_a_database`)."""
    if out is None or str(out) == STDIO:
        return
    if ledger is not None:
        for guarded in ledger_files(ledger):
            if _same_file(out, guarded):
                which = "" if guarded.name == ledger.name else f" (its file {guarded.name})"
                raise UsageError(
                    f"--out is the ledger {str(ledger)!r}{which}: writing it would destroy the "
                    "ledger; choose another path"
                )
    not_a_database(out)


KEY_FIELDS: tuple[Literal["user_key", "key"], ...] = ("user_key", "key")
UNKNOWN_ATTRIBUTES: tuple[Literal["accept", "ignore", "reject"], ...] = (
    "accept",
    "ignore",
    "reject",
)

Choice = TypeVar("Choice", bound=str)


def choice(option: str, raw: str, allowed: tuple[Choice, ...]) -> Choice:
    """One of `allowed`, or a one-line refusal naming them."""
    for value in allowed:
        if raw == value:
            return value
    raise UsageError(f"{option} must be one of {', '.join(allowed)}: got {raw!r}")
