"""The test command's throwaway PostgreSQL (tests/pg_server.py): it starts on loopback, and a
missing server binary is a failure that says how to install it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest
from pg_server import NoPostgres, Server, server_binaries

ROOT = Path(__file__).resolve().parent.parent


def test_the_server_answers_on_loopback(pg_server: Server) -> None:
    with psycopg.connect(pg_server.uri, connect_timeout=5) as db:
        (address,) = db.execute("SELECT inet_server_addr()::text").fetchone() or ("",)
        (version,) = db.execute("SHOW server_version_num").fetchone() or ("0",)
    assert address.startswith("127.0.0.1")
    assert int(version) >= 130000


def test_missing_binaries_name_the_package_to_install() -> None:
    with pytest.raises(NoPostgres, match="apt-get install postgresql"):
        server_binaries("/nonexistent/postgresql/*/bin")


def run_ci(tmp_path: Path, pg_glob: str) -> list[str]:
    """.ci/run with `apt-get` and `make` stubbed (each records its arguments): what it
    would install."""
    stubs = tmp_path / "bin"
    stubs.mkdir(parents=True)
    asked = tmp_path / "asked"
    for name in ("apt-get", "make"):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {asked}\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "PG_BIN_GLOB": pg_glob}
    ran = subprocess.run(
        [str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=30
    )
    assert ran.returncode == 0, ran.stderr
    return asked.read_text().splitlines() if asked.exists() else []


def test_ci_installs_the_postgresql_server_only_when_its_binaries_are_missing(
    tmp_path: Path,
) -> None:
    missing = run_ci(tmp_path / "missing", "/nonexistent/postgresql/*/bin")
    assert "apt-get install -y -qq postgresql" in missing
    assert missing[-1] == "make test"
    present = run_ci(tmp_path / "present", str(server_binaries().parent.parent / "*" / "bin"))
    assert not any("postgresql" in line for line in present), present
    assert present[-1] == "make test"
