"""Every command that takes a ledger takes a PostgreSQL URI too (DELIVERY §7): `send
--ledger`, `failed`, `requeue`, `explain`, `report` (and `serve --ledger`, in
tests/test_pg_serve.py), with `--pg-schema`; the password never printed; every refusal one
line, exit 2. In this process (typer's CliRunner) against the test run's own PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg
import pytest
from e2e_helpers import (
    API_KEY,
    SUBDOMAIN,
    invoke_cli,
    lines_of,
    table_value,
    write_config,
    write_lines,
)
from pg_server import PASSWORD, Server
from test_operator_commands import PAGE, REJECT_ONE_TRACK, key, one_line_error, write_seed

from pipeline.delivery.pg.ledger import VERSION
from pipeline.sandbox import SandboxOptions, serve_in_thread


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert "Traceback" not in text


def _seed(tmp_path: Path, uri: str, schema: str) -> None:
    """The operator tests' seed on PostgreSQL: 3 delivered, 3 rejected, then a refused key
    leaves the page pending (exit 3)."""
    events = write_seed(tmp_path / "seed.jsonl")
    config = write_config(tmp_path / "config.json")
    ledger = ("--ledger", uri, "--pg-schema", schema)
    with serve_in_thread(SandboxOptions(api_key=API_KEY, forced=REJECT_ONE_TRACK)) as url:
        first = invoke_cli("send", events, "--config", config, "--base-url", url, *ledger)
        assert first.returncode == 1, first.stdout + first.stderr
        page = write_lines(tmp_path / "page.jsonl", lines_of([PAGE]))
        second = invoke_cli("send", page, "--config", config, "--base-url", url, *ledger)
        assert second.returncode == 3, second.stdout + second.stderr
        _no_secret(first.stdout, first.stderr, second.stdout, second.stderr)
        # A re-run takes the pending page first (the key is still refused) and skips what is
        # finished: nothing is sent twice.
        again = invoke_cli("send", events, "--config", config, "--base-url", url, *ledger)
        assert again.returncode == 3, again.stdout + again.stderr
        assert table_value(again.stdout, "skipped (delivered earlier)") == "3"


def test_send_then_report_failed_explain_and_requeue_on_a_uri(
    tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    _seed(tmp_path, pg_server.uri, pg_schema)
    schema = ("--pg-schema", pg_schema)

    report = invoke_cli("report", pg_server.uri, *schema, "--json")
    assert report.returncode == 0, report.stderr
    summed = json.loads(report.stdout)
    assert summed["app"] == SUBDOMAIN
    assert summed["counts"] == {"pending": 1, "delivered": 3, "rejected": 3, "failed": 0, "held": 0}
    assert "postgres:***@" in summed["ledger"]

    unfinished = invoke_cli("failed", pg_server.uri, *schema)
    assert unfinished.returncode == 0, unfinished.stderr
    assert [json.loads(line)["messageId"] for line in unfinished.stdout.splitlines()] == ["p0"]
    rejected = invoke_cli("failed", pg_server.uri, *schema, "--rejected")
    assert len(rejected.stdout.splitlines()) == 3

    story = invoke_cli("explain", "t0", "--ledger", pg_server.uri, *schema)
    assert story.returncode == 0, story.stderr
    assert key("t0") in story.stdout
    assert "rejected" in story.stdout

    requeued = invoke_cli("requeue", pg_server.uri, *schema, "--rejected")
    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout.strip() == "3 events are pending again"
    after = json.loads(invoke_cli("report", pg_server.uri, *schema, "--json").stdout)
    assert after["counts"]["pending"] == 4
    _no_secret(
        report.stdout, unfinished.stderr, story.stdout, story.stderr, requeued.stdout, str(after)
    )


def test_an_unreachable_server_is_one_line_without_the_password(pg_schema: str) -> None:
    uri = f"postgresql://ann:{PASSWORD}@127.0.0.1:1/queue"
    for args in (("report", uri), ("failed", uri), ("explain", "k", "--ledger", uri)):
        line = one_line_error(invoke_cli(*args, "--pg-schema", pg_schema))
        assert "cannot open the PostgreSQL ledger postgresql://ann:***@127.0.0.1:1/queue" in line
        _no_secret(line)


def test_a_wrong_password_is_refused_by_send_before_anything_is_read(
    tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    events = write_lines(tmp_path / "e.jsonl", lines_of([PAGE]))
    config = write_config(tmp_path / "config.json")
    uri = pg_server.uri.replace(PASSWORD, "not-the-password")
    result = invoke_cli("send", events, "--config", config, "--ledger", uri)
    line = one_line_error(result)
    assert "password authentication failed" in line
    assert "not-the-password" not in line


def test_a_bad_schema_name_is_a_usage_error(pg_server: Server) -> None:
    line = one_line_error(invoke_cli("report", pg_server.uri, "--pg-schema", "x; drop"))
    assert "--pg-schema must be a plain lowercase name" in line


def test_a_ledger_of_a_newer_version_is_refused(pg_server: Server, pg_schema: str) -> None:
    with psycopg.connect(pg_server.uri, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {pg_schema}")
        db.execute(f"CREATE TABLE {pg_schema}.meta (name text PRIMARY KEY, value text)")
        db.execute(
            f"INSERT INTO {pg_schema}.meta VALUES ('kind', 'usercom-ledger'), ('version', %s)",
            (str(VERSION + 1),),
        )
    line = one_line_error(invoke_cli("report", pg_server.uri, "--pg-schema", pg_schema))
    assert "newer than this usercom reads" in line


def test_without_psycopg_a_uri_is_refused_with_the_install_line(
    pg_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    line = one_line_error(invoke_cli("report", pg_server.uri))
    assert "pip install 'usercom-pipeline[postgres]'" in line
    _no_secret(line)
