"""A throwaway PostgreSQL server for the tests (DELIVERY §7 "Tests").

Started from the distribution's server binaries (Debian: /usr/lib/postgresql/<version>/bin),
with a temporary data folder, listening on 127.0.0.1 on a free port, its unix socket inside the
data folder (never /var/run/postgresql, which a system server may own). `initdb` and `pg_ctl`
refuse to run as root, so as root they run as the `postgres` user (which the package creates);
as any other user they run directly.

One server per pytest process (per xdist worker), started the first time a test asks for it:
`initdb` plus a start costs about a second, less than coordinating one shared server between
workers (a lock, and a last-one-out stop), and no worker ever waits on another's database.
Each test then works in a schema of its own (`pg_schema` in conftest), so nothing is shared.

`USERCOM_TEST_PG=postgresql://...` runs the tests against an existing server instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

BIN_GLOB: Final = "/usr/lib/postgresql/*/bin"
EXISTING: Final = "USERCOM_TEST_PG"
PASSWORD: Final = "test-only-Pa55word"  # the throwaway server's superuser password
_START_TRIES: Final = 3  # a free port found by bind(0) may be taken before the server binds it


class NoPostgres(RuntimeError):
    """The PostgreSQL server binaries are missing or the server would not start: the tests
    fail with this one line (they are never skipped)."""


@dataclass(frozen=True, slots=True)
class Server:
    """A running server: `uri` reaches its `postgres` database as the superuser."""

    uri: str
    port: int


def server_binaries(pattern: str = BIN_GLOB) -> Path:
    """The newest installed version's bin folder (the one holding `initdb` and `pg_ctl`)."""
    found = [
        Path(folder)
        for folder in Path("/").glob(pattern.lstrip("/"))
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file()
    ]
    if not found:
        raise NoPostgres(
            f"no PostgreSQL server binaries in {pattern}: install them "
            "(Debian/Ubuntu: apt-get install postgresql) or set "
            f"{EXISTING}=postgresql://... to use an existing server"
        )
    return max(found, key=_version_of)


def _version_of(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name)) or (0,)


def _as_owner(command: Sequence[str]) -> list[str]:
    """`command` as the user that may run the server: `postgres` when we are root."""
    if os.geteuid() != 0:
        return list(command)
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", "postgres", "--", *command]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(_quoted(command))]


def _quoted(command: Sequence[str]) -> list[str]:
    return ["'" + part.replace("'", "'\\''") + "'" for part in command]


def _owner_ids() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as missing:
        raise NoPostgres(
            "running as root, PostgreSQL's initdb needs the `postgres` user, which is missing: "
            "install the postgresql package (it creates the user) or run the tests as another "
            "user"
        ) from missing
    return entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(command: Sequence[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(
        _as_owner(command), capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log else []
        raise NoPostgres(f"{what} failed: {' | '.join([*detail[-3:], *tail])}")


@contextlib.contextmanager
def throwaway_server(*, durable: bool = False) -> Iterator[Server]:
    """Start a server in a fresh temporary folder; stop it and remove the folder after.
    `durable` (the benchmarks): fsync on, as a real server runs; the tests run without."""
    existing = os.environ.get(EXISTING)
    if existing:
        yield Server(existing, 0)
        return
    binaries = server_binaries()
    ids = _owner_ids()
    # Not under pytest's basetemp: that is private to root, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="usercom-pg-"))
    try:
        if ids is not None:
            os.chown(folder, *ids)
        data, log, secret = folder / "data", folder / "server.log", folder / "password"
        secret.write_text(PASSWORD + "\n")
        if ids is not None:
            os.chown(secret, *ids)
        _run(
            [
                str(binaries / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                "postgres",
                # Loopback logins need the password, as on a real server: the tests see a URI
                # with a password in it (never printed) and a wrong one refused.
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--pwfile",
                str(secret),
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",  # a test server: a crash of the machine loses nothing of value
            ],
            "initdb",
        )
        port = _start(binaries, folder, data, log, durable=durable)
        try:
            yield Server(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres", port)
        finally:
            _run(
                [str(binaries / "pg_ctl"), "--pgdata", str(data), "--mode", "immediate", "stop"],
                "pg_ctl stop",
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _start(binaries: Path, folder: Path, data: Path, log: Path, *, durable: bool) -> int:
    last: NoPostgres | None = None
    speed = "" if durable else "-c fsync=off -c full_page_writes=off "
    for _ in range(_START_TRIES):
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {folder} {speed}-c max_connections=200"
        try:
            _run(
                [
                    str(binaries / "pg_ctl"),
                    "--pgdata",
                    str(data),
                    "--log",
                    str(log),
                    "--wait",
                    "--options",
                    options,
                    "start",
                ],
                "pg_ctl start",
                log,
            )
        except NoPostgres as problem:
            last = problem
            continue
        return port
    assert last is not None
    raise last
