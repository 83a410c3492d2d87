"""The test command's throwaway PostgreSQL (tests/pg_server.py): it starts on loopback, and a
missing server binary is a failure that says how to install it."""

from __future__ import annotations

import psycopg
import pytest
from pg_server import NoPostgres, Server, server_binaries


def test_the_server_answers_on_loopback(pg_server: Server) -> None:
    with psycopg.connect(pg_server.uri, connect_timeout=5) as db:
        (address,) = db.execute("SELECT inet_server_addr()::text").fetchone() or ("",)
        (version,) = db.execute("SHOW server_version_num").fetchone() or ("0",)
    assert address.startswith("127.0.0.1")
    assert int(version) >= 130000


def test_missing_binaries_name_the_package_to_install() -> None:
    with pytest.raises(NoPostgres, match="apt-get install postgresql"):
        server_binaries("/nonexistent/postgresql/*/bin")
