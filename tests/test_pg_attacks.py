"""PostgreSQL ledger URIs as an operator mistypes them or an attacker crafts them
(DELIVERY §7): the password never in a message, libpq's forms accepted, and what a message
names can be pasted back into a command."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import psycopg
import pytest
from pg_server import Server
from serve_helpers import SUBDOMAIN, health, identify, options, post, service_in_thread, wait_until

from pipeline.delivery.ledger import LedgerError
from pipeline.delivery.pg import open_reader_at, open_writer_at
from pipeline.delivery.pg.location import (
    LocationError,
    PgLocation,
    is_uri,
    ledger_location,
    masked,
    scrubbed,
)
from pipeline.delivery.queue import Arrival
from pipeline.serve.options import ServeConfigError, duration, lease_ttl

SECRET = "SECRETPW"


@pytest.mark.parametrize(
    "uri",
    [
        f"postgresql://u:{SECRET}@h\uff1ast/db",  # a full-width colon: Python names the netloc
        f"postgresql://u:{SECRET}@h\u2100st/db",
        f"postgresql://u:{SECRET}@[::1/db",
        f"postgresql://u:{SECRET}@h:abc/db",
    ],
)
def test_an_invalid_uri_is_refused_without_its_password(uri: str) -> None:
    with pytest.raises(LocationError) as refused:
        ledger_location(uri)
    assert SECRET not in str(refused.value)
    assert "\n" not in str(refused.value)


def test_several_hosts_in_libpq_syntax_are_one_ledger() -> None:
    uri = f"postgresql://u:{SECRET}@10.0.0.1:5432,10.0.0.2:5433/db?target_session_attrs=read-write"
    found = ledger_location(uri)
    assert isinstance(found, PgLocation)
    assert SECRET not in found.shown


@pytest.mark.parametrize(
    "uri", ["postgres:///db", "postgresql:///db?host=/run/pg", "postgresql://"]
)
def test_a_uri_without_a_host_is_shown_as_a_uri_still(uri: str) -> None:
    assert is_uri(masked(uri)), masked(uri)
    assert masked(uri) == uri


def test_a_nul_in_an_event_is_stored_and_delivered_on_postgresql(
    sandbox: str, tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    """JSON may carry \\u0000 anywhere; PostgreSQL text may not hold it. Such an event (and its
    batch) used to be answered 503 for ever, pausing ingest for every client meanwhile."""
    where = PgLocation(pg_server.uri, pg_schema)
    on_pg = dataclasses.replace(
        options(tmp_path / "unused.sqlite", sandbox), ledgers={SUBDOMAIN: where}
    )
    nul = {**identify("ada\x00x"), "messageId": "m\x001", "traits": {"email": "a@b.c", "n": "\x00"}}
    with service_in_thread(on_pg) as service:
        answer = post(service.url, "/v1/batch", {"batch": [nul, identify("bob")]})
        assert answer.status_code == 200, answer.text
        assert wait_until(lambda: delivered(where) == 2), delivered(where)
        assert health(service.url)["paused"] is None


def delivered(where: PgLocation) -> int:
    with contextlib.closing(open_reader_at(where)) as book:
        return book.counts()["delivered"]


def test_a_lone_surrogate_in_an_event_is_stored_and_delivered_on_postgresql(
    sandbox: str, tmp_path: Path, pg_server: Server, pg_schema: str
) -> None:
    """JSON lets a lone surrogate through (`\\ud800`, what JavaScript leaves of a cut emoji);
    UTF-8 cannot hold it: the batch was 503 for ever on PostgreSQL (SQLite took it)."""
    where = PgLocation(pg_server.uri, pg_schema)
    on_pg = dataclasses.replace(
        options(tmp_path / "unused.sqlite", sandbox), ledgers={SUBDOMAIN: where}
    )
    body = (
        b'{"batch": [{"type": "identify", "userId": "s\\ud800", "messageId": "m\\udfff1", '
        b'"traits": {"email": "a@b.c", "n": "\\ud800"}}]}'
    )
    with service_in_thread(on_pg) as service:
        answer = post(service.url, "/v1/batch", content=body)
        assert answer.status_code == 200, answer.text
        assert wait_until(lambda: delivered(where) == 1), delivered(where)


@pytest.mark.parametrize("raw", ["99999999999999999999h", "400000000", "4000d"])
def test_a_duration_past_ten_years_is_refused_in_one_line(raw: str) -> None:
    with pytest.raises(ServeConfigError, match="at most 3650d"):
        duration("--lease-ttl", raw)


def test_a_lease_ttl_under_a_second_is_refused() -> None:
    """Leases are renewed every third of it, each a PostgreSQL round trip: 1 ms was 3,000
    writes a second per instance and per lane batch."""
    with pytest.raises(ServeConfigError, match="at least 1s"):
        lease_ttl("0.001")
    assert lease_ttl("30s") == 30.0


@pytest.mark.parametrize("cut", ["/", "#", "?", "@"])
def test_a_password_with_an_unencoded_delimiter_is_never_shown(cut: str) -> None:
    """libpq wants `/ # ? @` in a password percent-encoded; typed as they are, Python and
    libpq split the URI elsewhere than the password ends, and its pieces were printed."""
    uri = f"postgresql://u:pa{cut}{SECRET}@127.0.0.1:1/db"
    try:
        shown = PgLocation(uri).shown if isinstance(ledger_location(uri), PgLocation) else ""
    except LocationError as refused:
        shown = str(refused)
    assert SECRET not in shown, shown
    assert "pa" + cut not in shown, shown
    assert SECRET not in scrubbed(f"invalid port {SECRET}@127.0.0.1", uri)


def test_a_driver_message_has_no_piece_of_the_password() -> None:
    uri = f"postgresql://u:SECRET@{SECRET}@127.0.0.1:1/db"
    said = scrubbed(f"failed to resolve host '{SECRET}@127.0.0.1'", uri)
    assert SECRET not in said, said


def test_a_writer_whose_connection_was_cut_connects_again(
    pg_server: Server, pg_schema: str
) -> None:
    """A database restart (or failover) cuts every connection: the service's writer kept its
    closed one, and ingest answered 503 for ever after the database was back."""
    where = PgLocation(pg_server.uri, pg_schema)
    with contextlib.closing(open_writer_at(where, "acme")) as book:
        book.admit([Arrival("acme:1", "h1", b'{"type": "identify"}', None)], received=1.0)
        book.flush()
        with psycopg.connect(pg_server.uri, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query NOT LIKE '%%pg_stat_activity%%' "
                "AND backend_type = 'client backend' AND datname = current_database() "
                "AND application_name = ''"
            )
        with contextlib.suppress(LedgerError):  # the statement the cut met
            book.counts()
        assert book.counts()["pending"] == 1
        book.admit([Arrival("acme:2", "h2", b'{"type": "identify"}', None)], received=2.0)
        book.flush()
        assert book.counts()["pending"] == 2
