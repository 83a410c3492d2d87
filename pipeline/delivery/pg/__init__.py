"""The PostgreSQL ledger (DELIVERY §7), and opening a ledger wherever it is: a SQLite file or
a `postgresql://` URI. The driver (psycopg 3, the `postgres` extra) is imported only when a
URI is opened."""

from __future__ import annotations

from pathlib import Path

from pipeline.delivery.ledger import Ledger
from pipeline.delivery.pg.ledger import Leasing, PgLedger
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
    "Leasing",
    "LocationError",
    "PgLedger",
    "PgLocation",
    "is_uri",
    "ledger_location",
    "masked",
    "open_reader_at",
    "open_writer_at",
    "schema_name",
    "shared",
]


def open_writer_at(
    where: Path | PgLocation, app: str, *, durable: bool = False, leasing: Leasing | None = None
) -> Ledger:
    """The ledger of `app` for writing: the file (locked, one writer) or the database (any
    number of writers, lanes leased as `leasing` says; every commit durable)."""
    if isinstance(where, PgLocation):
        return PgLedger.open_pg_writer(where, app, leasing)
    return Ledger.open_writer(where, app, durable=durable)


def open_reader_at(where: Path | PgLocation) -> Ledger:
    """The ledger for reading, taking no lock (works while writers run)."""
    if isinstance(where, PgLocation):
        return PgLedger.open_pg_reader(where)
    return Ledger.open_reader(where)


def shared(queue: object) -> bool:
    """Whether other processes may add to this queue (a PostgreSQL one): its deliverer must
    look again now and then, not only when its own ingest wakes it."""
    return isinstance(queue, PgLedger)
