"""Options several commands share, spelled once so that their syntax, help and defaults
cannot drift between `send` and `serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.checks import UsageError
from pipeline.delivery.pg import DEFAULT_SCHEMA, LocationError, PgLocation, ledger_location
from pipeline.serve import ServeConfigError, duration
from pipeline.serve.options import retention_days

# The defaults of `demo` and `serve --demo`.
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# A duration is 90s, 30m, 24h or 7d (a bare number is seconds), parsed by `serve.duration`.
MaxOutage = Annotated[
    str,
    typer.Option(
        "--max-outage",
        metavar="DURATION",
        help="how long an outage of User.com may last (90s, 30m, 24h; a bare number is "
        "seconds): then send stops (exit 3) and serve pauses delivery, probing until it ends",
    ),
]
MAX_OUTAGE = "30m"
# Retention takes the same durations; a bare number stays days, as it always was.
KeepDays = Annotated[
    str,
    typer.Option(
        "--keep-days",
        metavar="DURATION",
        help="delivered and rejected events keep their body this long (7d, 36h; a bare "
        "number is days)",
    ),
]
KEEP_DAYS = "7d"
Concurrency = Annotated[
    int, typer.Option(metavar="N", help="users delivered at once, per app (1-1024)")
]
Rate = Annotated[float | None, typer.Option(metavar="R", help="max requests per second, per app")]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        metavar="ORIGIN",
        help="send to another origin (the sandbox, a proxy); URLs in outcomes and the ledger "
        "stay real",
    ),
]

# The ledger-reading commands name the file they read alike: a run's ledger or the service's.
LEDGER_HELP = "the ledger of a run or of the service: a file, or a postgresql:// URI"
LedgerArgument = Annotated[str, typer.Argument(metavar="LEDGER", help=LEDGER_HELP)]
PgSchema = Annotated[
    str,
    typer.Option(
        "--pg-schema",
        metavar="NAME",
        help="with a postgresql:// ledger: the schema holding its tables",
    ),
]
PG_SCHEMA = DEFAULT_SCHEMA
LeaseTtl = Annotated[
    str,
    typer.Option(
        "--lease-ttl",
        metavar="DURATION",
        help="with a postgresql:// ledger: how long a lane's lease outlives an instance that "
        "stopped renewing it (30s, 2m; a bare number is seconds)",
    ),
]
LEASE_TTL = "30s"


def ledger_at(raw: str, schema: str = PG_SCHEMA) -> Path | PgLocation:
    """A ledger argument: a file path, or a PostgreSQL URI with its --pg-schema."""
    try:
        return ledger_location(raw, schema)
    except LocationError as problem:
        raise UsageError(str(problem)) from problem


def duration_of(option: str, raw: str) -> float:
    """Seconds of a duration option: the service's parser, its refusal as a usage error."""
    try:
        return duration(option, raw)
    except ServeConfigError as problem:
        raise UsageError(str(problem)) from problem


def retention_of(option: str, raw: str) -> float:
    """Days of a retention option: the service's parser, its refusal as a usage error."""
    try:
        return retention_days(option, raw)
    except ServeConfigError as problem:
        raise UsageError(str(problem)) from problem
