"""The PostgreSQL ledger (DELIVERY §7), and opening a ledger wherever it is: a SQLite file or
a `postgresql://` URI. The driver (psycopg 3, the `postgres` extra) is imported only when a
URI is opened."""

from __future__ import annotations

from pathlib import Path

from pipeline.delivery.ledger import Ledger
from pipeline.delivery.pg.location import (
    DEFAULT_SCHEMA,
    LocationError,
    PgLocation,
    is_uri,
    ledger_location,
    masked,
    schema_name,
)

__all__ = [
    "DEFAULT_SCHEMA",
    "LocationError",
    "PgLocation",
    "is_uri",
    "ledger_location",
    "masked",
    "open_reader_at",
    "open_writer_at",
    "schema_name",
]


def open_writer_at(where: Path | PgLocation, app: str, *, durable: bool = False) -> Ledger:
    """The ledger of `app` for writing: the file (locked, one writer) or the database (any
    number of writers; every commit durable)."""
    if isinstance(where, PgLocation):
        from pipeline.delivery.pg.ledger import PgLedger

        return PgLedger.open_pg_writer(where, app)
    return Ledger.open_writer(where, app, durable=durable)


def open_reader_at(where: Path | PgLocation) -> Ledger:
    """The ledger for reading, taking no lock (works while writers run)."""
    if isinstance(where, PgLocation):
        from pipeline.delivery.pg.ledger import PgLedger

        return PgLedger.open_pg_reader(where)
    return Ledger.open_reader(where)
