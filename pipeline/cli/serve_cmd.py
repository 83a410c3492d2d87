"""`usercom serve`: the live destination (ingest, durable queue, delivery), and its `--demo`."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import checks
from pipeline.cli.checks import UsageError
from pipeline.cli.options import (
    EXAMPLES,
    KEEP_DAYS,
    LEASE_TTL,
    MAX_OUTAGE,
    PG_SCHEMA,
    BaseUrl,
    Concurrency,
    KeepDays,
    LeaseTtl,
    MaxOutage,
    PgSchema,
    Rate,
    ledger_at,
    retention_of,
)
from pipeline.cli.output import refusal, stderr
from pipeline.cli.secrets import (
    CONSOLE_TOKEN_ENV,
    TRANSFORMER_TOKEN_ENV,
    WRITE_KEYS_ENV,
    console_secret,
    serve_secrets,
)
from pipeline.cli.sending import EXIT_USAGE
from pipeline.delivery.ledger import LedgerError
from pipeline.delivery.pg import PgLocation
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.serve import (
    ListenError,
    ServeConfigError,
    ServeOptions,
    Service,
    create_ledger_folders,
    duration,
    ledger_paths,
    listening_socket,
    load_sources,
)
from pipeline.serve import serve as run_service
from pipeline.serve.logs import configure as configure_logs
from pipeline.serve.logs import emit, ignored_entries
from pipeline.serve.options import lease_ttl as lease_ttl_of

DEMO_WRITE_KEY = "demo-write-key"


def _demo_defaults(
    config: Path | None,
    ledger: Path | PgLocation | None,
    write_key: list[str] | None,
    base_url: str | None,
) -> tuple[Path, Path | PgLocation | None, list[str]]:
    """`serve --demo`: the example config and the demo write key unless given."""
    if base_url is not None:
        raise UsageError("--demo sends to its own sandbox: remove --base-url")
    return config or EXAMPLES / "config.json", ledger, write_key or [DEMO_WRITE_KEY]


def console_line(url: str, demo_token: str | None) -> str:
    """Where the console is; the token only when the demo made it up (an operator's own is
    never printed)."""
    how = (
        f"sign in with the demo token {demo_token}"
        if demo_token is not None
        else f"sign in with the --console-token (or ${CONSOLE_TOKEN_ENV})"
    )
    return f"  console: {url}/console/ ({how})"


def demo_banner(
    url: str,
    sandbox_url: str,
    key: str,
    ledger: Path | PgLocation,
    *,
    scratch: bool,
    console_token: str | None = None,
) -> str:
    """What `serve --demo` prints under its address: how to send an event, where its ledger
    is (so that report, failed and explain can be tried on what was sent), and the console."""
    kept = " (scratch: deleted when the demo stops)" if scratch else ""
    console = f"\n{console_line(url, console_token)}"
    return (
        f"  sandbox User.com: {sandbox_url} (what it holds: {sandbox_url}/__sandbox__/state)\n"
        f"  send an event: curl -u {key}: -H 'Content-Type: application/json' "
        '-d \'{"userId": "u-1", "traits": {"email": "ada@example.com"}}\' '
        f"{url}/v1/identify\n"
        f"  health: {url}/health   metrics: {url}/metrics   Ctrl+C stops\n"
        f"  ledger: {ledger}{kept}: try `usercom report {ledger}`, `usercom failed {ledger}`, "
        f"`usercom explain KEY --ledger {ledger}`"
        f"{console}"
    )


def _serve_options(
    config: Path | None,
    ledger: Path | PgLocation | None,
    write_keys: tuple[str, ...],
    *,
    host: str,
    port: int,
    base_url: str | None,
    concurrency: int,
    rate: float | None,
    give_up_after: str,
    max_queued: int,
    keep_days: str,
    transformer_token: str | None,
    max_outage: str,
    lease_ttl: str = "30s",
    max_connections: int,
    header_timeout: str,
    body_timeout: str,
    console_token: str | None = None,
) -> ServeOptions:
    """`usercom serve`'s options, checked before anything is opened (UsageError or
    ServeConfigError: one line, exit 2)."""
    if config is None:
        raise UsageError("--config FILE is required (or --demo)")
    if ledger is None:
        raise UsageError("--ledger PATH is required (or --demo)")
    sources = load_sources(config, write_keys)
    origin = checks.origin(base_url) if base_url is not None else None
    if not host.strip():
        raise UsageError("--host must not be empty (127.0.0.1: this machine only)")
    if max_queued < 1:
        raise UsageError(f"--max-queued must be an integer >= 1: got {max_queued}")
    days_kept = retention_of("--keep-days", keep_days)
    if transformer_token is not None and not transformer_token.strip():
        raise UsageError("--transformer-token must not be empty")
    if max_connections < 1:
        raise UsageError(f"--max-connections must be an integer >= 1: got {max_connections}")
    return ServeOptions(
        sources=sources,
        # Nothing is created before the address is known to be free (see `serve`).
        ledgers=ledger_paths(ledger, tuple(sources.apps), create=False),
        host=host,
        port=checks.port(port),
        base_url=origin,
        concurrency=checks.concurrency(concurrency),
        rate=checks.rate(rate),
        give_up_after=duration("--give-up-after", give_up_after),
        max_queued=max_queued,
        keep_days=days_kept,
        transformer_token=transformer_token,
        console_token=console_token,
        max_outage=duration("--max-outage", max_outage),
        lease_ttl=lease_ttl_of(lease_ttl),
        max_connections=max_connections,
        header_timeout=duration("--header-timeout", header_timeout),
        body_timeout=duration("--body-timeout", body_timeout),
    )


def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help='required unless --demo: one app\'s destination config, or {"sources": '
            '[{"writeKey": K, "destination": {...}}, ...]} for several',
        ),
    ] = None,
    ledger: Annotated[
        str | None,
        typer.Option(
            "--ledger",
            metavar="PATH",
            help="required unless --demo: the ledger (the queue), a file for one app; a "
            "folder holding <subdomain>.sqlite per app for several; or a postgresql:// URI "
            "that any number of instances share",
        ),
    ] = None,
    pg_schema: PgSchema = PG_SCHEMA,
    host: Annotated[str, typer.Option(metavar="HOST", help="address to listen on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(metavar="PORT", help="port to listen on (0 picks a free one)")
    ] = 8080,
    write_key: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY",
            help="a write key accepted for the one app (repeatable; visible in ps: prefer "
            f"--write-key-file or ${WRITE_KEYS_ENV}, comma-separated); none: anyone may send",
        ),
    ] = None,
    write_key_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="write keys for the one app, one a line"),
    ] = None,
    base_url: BaseUrl = None,
    concurrency: Concurrency = 8,
    rate: Rate = None,
    give_up_after: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="a failed event is retried until it is this old (24h, 90m)"
        ),
    ] = "24h",
    max_queued: Annotated[
        int, typer.Option(metavar="N", help="past this many queued events ingest answers 503")
    ] = 1_000_000,
    keep_days: KeepDays = KEEP_DAYS,
    transformer_token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            help="require Authorization: Bearer TOKEN on the transformer API (visible in ps: "
            f"prefer --transformer-token-file or ${TRANSFORMER_TOKEN_ENV})",
        ),
    ] = None,
    transformer_token_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="the transformer token, on the file's first line"),
    ] = None,
    console_token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            help="serve the web console at /console/ to whoever signs in with TOKEN (visible "
            f"in ps: prefer ${CONSOLE_TOKEN_ENV}); none: no console (--demo makes one up)",
        ),
    ] = None,
    max_outage: MaxOutage = MAX_OUTAGE,
    lease_ttl: LeaseTtl = LEASE_TTL,
    max_connections: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="client connections open at once: at the cap the longest idle one is closed "
            "for a new one; when all are busy new ones get 503 (a proxy in front holds more)",
        ),
    ] = 1000,
    header_timeout: Annotated[
        str,
        typer.Option(metavar="DURATION", help="a request's head must arrive within this"),
    ] = "10s",
    body_timeout: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="a request's body must arrive within this (else 408)"
        ),
    ] = "60s",
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="in front of a local sandbox: the example config, a scratch ledger and the "
            f"write key {DEMO_WRITE_KEY} unless given",
        ),
    ] = False,
) -> None:
    """Serve the live User.com destination: RudderStack/Segment HTTP API and webhook ingest,
    a durable queue in the ledger, continuous delivery, the transformer API, /health, /metrics.

    Exit status: 0 stopped by SIGTERM or Ctrl+C; 2 a usage, config or ledger problem (nothing
    was started).
    """
    err = stderr()
    with contextlib.ExitStack() as stack:
        try:
            keys, transformer_token = serve_secrets(
                tuple(write_key or ()),
                write_key_file,
                transformer_token,
                transformer_token_file,
                os.environ,
            )
            write_key = list(keys) or None
            console_token = console_secret(console_token, os.environ)
            # The demo's console is on with a token made up for it, printed in its banner.
            demo_token = secrets.token_urlsafe(12) if demo and console_token is None else None
            console_token = console_token or demo_token
            scratch = demo and ledger is None
            where = None if ledger is None else ledger_at(ledger, pg_schema)
            if demo:
                config, where, write_key = _demo_defaults(config, where, write_key, base_url)
                if where is None:
                    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="usercom-"))
                    where = Path(folder) / "demo.sqlite"
            options = _serve_options(
                config,
                where,
                tuple(write_key or ()),
                host=host,
                port=port,
                base_url=base_url,
                concurrency=concurrency,
                rate=rate,
                give_up_after=give_up_after,
                max_queued=max_queued,
                keep_days=keep_days,
                transformer_token=transformer_token,
                console_token=console_token,
                max_outage=max_outage,
                lease_ttl=lease_ttl,
                max_connections=max_connections,
                header_timeout=header_timeout,
                body_timeout=body_timeout,
            )
            sources = options.sources
            # Listen first: a port in use or a wrong host must leave no ledger behind.
            sock = listening_socket(options.host, options.port)
            stack.callback(sock.close)
            if demo:
                cfg = next(iter(sources.apps.values()))
                sandbox_url = stack.enter_context(
                    serve_in_thread(SandboxOptions(api_key=cfg.api_key))
                )
                options = dataclasses.replace(options, base_url=sandbox_url)
            create_ledger_folders(options.ledgers)
            service = Service.open(options)
            stack.callback(service.store.close)
        except (UsageError, ServeConfigError, LedgerError, ListenError) as problem:
            err.print(refusal(problem), highlight=False)
            raise typer.Exit(EXIT_USAGE) from problem
        # From here on stderr is the service's log: every line logfmt, each warning once.
        configure_logs()
        notes = {app: cfg.ignored for app, cfg in sources.apps.items()}
        for note, apps in ignored_entries(notes):
            emit(logging.WARNING, "config_entry_ignored", config=config, apps=apps, note=note)
        if sources.open:
            emit(
                logging.WARNING,
                "ingest_open",
                host=options.host,
                note=f"no --write-key: anyone who can reach {options.host} may send events",
            )

        def announce(url: str) -> None:
            print(f"usercom serve listening on {url}", flush=True)
            if demo and where is not None:
                # A key of the operator's own is never printed: only the demo's.
                given = (write_key or [DEMO_WRITE_KEY])[0]
                key = given if given == DEMO_WRITE_KEY else "$WRITE_KEY"
                banner = demo_banner(
                    url,
                    options.base_url or "",
                    key,
                    where,
                    scratch=scratch,
                    console_token=demo_token,
                )
                print(banner, flush=True)
            elif options.console_token is not None:
                print(console_line(url, None), flush=True)

        run_service(service, sock, announce)
