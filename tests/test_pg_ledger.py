"""The PostgreSQL ledger (pipeline/delivery/pg): the SQLite ledger's promises in a schema of
its own, for many writers (DELIVERY §2, §4, §7)."""

from __future__ import annotations

import sys
import time

import psycopg
import pytest
from pg_server import PASSWORD, Server

from pipeline.delivery.ledger import Ledger, LedgerError
from pipeline.delivery.pg import PgLocation, open_reader_at, open_writer_at
from pipeline.delivery.pg.ledger import VERSION, PgLedger


def _at(server: Server, schema: str) -> PgLocation:
    return PgLocation(server.uri, schema)


def test_the_ledger_keeps_rows_and_outcomes_in_position_order(
    pg_server: Server, pg_schema: str
) -> None:
    where = _at(pg_server, pg_schema)
    with open_writer_at(where, "acme") as book:
        assert book.enqueue("acme:a", "h1", b'{"n":1}') == 1
        assert book.enqueue("acme:b", "h2", b'{"n":2}') == 2
        book.record("acme:a", "failed", 3, ["POST https://x -> 500"], "boom", [])
        book.enqueue("acme:c", "h3", b'{"n":3}', rejected="too big")
        book.flush()
    with open_reader_at(where) as seen:
        assert seen.app == "acme"
        assert [r.key for r in seen.unfinished()] == ["acme:a", "acme:b"]
        assert list(seen.lines(["rejected"])) == [b'{"n":3}']
        assert seen.counts()["failed"] == 1
        assert seen.find("a") is not None
        assert seen.error_counts(5) == [("boom", 1), ("too big", 1)]
        assert list(seen.request_logs()) == [("POST https://x -> 500",)]
        assert seen.keys_starting("acme:", 5) == ["acme:a", "acme:b", "acme:c"]
    with open_writer_at(where, "acme") as book:
        assert book.requeue(None, rejected=True) == 2
        assert book.enqueue("acme:a", "h1b", b'{"n":1}') == 4  # again: to the back
        book.flush()
        assert [r.key for r in book.unfinished()] == ["acme:b", "acme:c", "acme:a"]


def test_positions_follow_commit_order_across_writers(pg_server: Server, pg_schema: str) -> None:
    where = _at(pg_server, pg_schema)
    first = open_writer_at(where, "acme")
    second = open_writer_at(where, "acme")
    try:
        assert first.enqueue("acme:1", "h", b"{}") == 1
        first.flush()
        with first.atomic():
            first.enqueue("acme:2", "h", b"{}")
        first.rollback()  # never committed: takes no position
        assert second.enqueue("acme:3", "h", b"{}") == 2
        second.flush()
        assert first.enqueue("acme:4", "h", b"{}") == 3
        first.flush()
    finally:
        first.close()
        second.close()


def test_a_failed_admission_leaves_nothing_and_the_rest_commits(
    pg_server: Server, pg_schema: str
) -> None:
    where = _at(pg_server, pg_schema)
    with open_writer_at(where, "acme") as book:
        book.enqueue("acme:kept", "h", b"{}")
        with pytest.raises(RuntimeError):
            _admit_then_fail(book)
        book.flush()
        assert [r.key for r in book.rows()] == ["acme:kept"]


def _admit_then_fail(book: Ledger) -> None:
    with book.atomic():
        book.enqueue("acme:gone", "h", b"{}")
        raise RuntimeError


def test_a_newer_schema_version_is_refused(pg_server: Server, pg_schema: str) -> None:
    where = _at(pg_server, pg_schema)
    open_writer_at(where, "acme").close()
    with psycopg.connect(pg_server.uri, autocommit=True) as db:
        db.execute(
            f"UPDATE {pg_schema}.meta SET value = %s WHERE name = 'version'", (str(VERSION + 1),)
        )
    with pytest.raises(LedgerError, match="newer than this usercom reads"):
        open_writer_at(where, "acme")


def test_a_schema_holding_other_tables_is_left_alone(pg_server: Server, pg_schema: str) -> None:
    with psycopg.connect(pg_server.uri, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {pg_schema}")
        db.execute(f"CREATE TABLE {pg_schema}.orders (id int)")
    with pytest.raises(LedgerError, match="not a usercom ledger: it was left untouched"):
        open_writer_at(_at(pg_server, pg_schema), "acme")
    with psycopg.connect(pg_server.uri, autocommit=True) as db:
        found = db.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (pg_schema,)
        ).fetchone()
    assert found == (1,)


def test_a_reader_never_creates_a_ledger(pg_server: Server, pg_schema: str) -> None:
    with pytest.raises(LedgerError, match="does not exist"):
        open_reader_at(_at(pg_server, pg_schema))


def test_a_bad_password_is_refused_without_showing_it(pg_server: Server, pg_schema: str) -> None:
    uri = pg_server.uri.replace(f":{PASSWORD}@", ":Wr0ngSecret@")
    with pytest.raises(LedgerError) as refused:
        PgLedger.open_pg_reader(PgLocation(uri, pg_schema))
    words = str(refused.value)
    assert "password authentication failed" in words
    assert "Wr0ngSecret" not in words
    assert "postgres:***@127.0.0.1" in words
    assert "\n" not in words


def test_without_psycopg_the_refusal_is_the_install_line(
    pg_server: Server, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(LedgerError, match=r"pip install 'usercom-pipeline\[postgres\]'"):
        open_reader_at(_at(pg_server, pg_schema))


def test_retention_sheds_bodies_then_deletes_old_rows_in_bounded_batches(
    pg_server: Server, pg_schema: str
) -> None:
    where = _at(pg_server, pg_schema)
    with open_writer_at(where, "acme") as book:
        for name in ("a", "b", "c"):
            book.enqueue(f"acme:{name}", "h", b'{"n":1}')
            book.record(f"acme:{name}", "delivered", 1, [], None, [])
        book.enqueue("acme:open", "h", b'{"n":2}')
        book.flush()
        later = time.time() + 1
        assert book.forget_lines(later, limit=2) == 2  # bounded: two bodies per batch
        assert book.forget_lines(later, limit=2) == 1
        assert list(book.lines(["delivered"])) == []
        assert book.state("acme:a") == ("delivered", "h")  # a late retry is still one event
        with psycopg.connect(pg_server.uri, autocommit=True) as db:  # 31 days pass
            db.execute(f"UPDATE {pg_schema}.events SET forgotten = forgotten - 31 * 86400")
        book.forget_lines(later, limit=2)
        assert book.counts()["delivered"] == 1
        book.forget_lines(later, limit=2)
        assert book.counts() == {**book.counts(), "delivered": 0, "pending": 1}
