"""`usercom sandbox` (the local User.com model) and `usercom demo` (send the examples to it)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli import checks
from pipeline.cli.checks import KEY_FIELDS, UNKNOWN_ATTRIBUTES, UsageError
from pipeline.cli.inputs import count_events, load_config, open_source
from pipeline.cli.options import EXAMPLES
from pipeline.cli.output import refusal, stderr
from pipeline.cli.plain import plain
from pipeline.cli.sending import EXIT_USAGE, exit_status, final_words, run_send, summary_table
from pipeline.delivery import DeliveryOptions
from pipeline.sandbox import ListenError, SandboxOptions, parse_forced, run, serve_in_thread


def _announce(url: str) -> None:
    print(f"sandbox listening on {url}", flush=True)


def _sandbox_key(api_key: str | None) -> str | None:
    if api_key is not None and not api_key.strip():
        raise UsageError(
            "--api-key must not be empty (it would refuse every key): leave it out to accept "
            "any key, or give the one key to accept"
        )
    return api_key


def sandbox(
    port: Annotated[
        int, typer.Option(metavar="PORT", help="port on 127.0.0.1 (0 picks a free one)")
    ] = 8000,
    api_key: Annotated[
        str | None, typer.Option(metavar="KEY", help="the only API key accepted (default: any key)")
    ] = None,
    force: Annotated[
        list[str] | None,
        typer.Option(
            metavar="RULE",
            help="force a status: '[METHOD ]ROUTE=STATUS[xN]', e.g. "
            "'users-by-id-events-create=503x10' for send's event writes (repeatable)",
        ),
    ] = None,
    latency_ms: Annotated[
        float, typer.Option(metavar="MS", min=0, help="delay before each answer")
    ] = 0,
    error_rate: Annotated[
        float,
        typer.Option(
            metavar="SHARE", min=0, max=1, help="share of requests answered 500/502/503/504"
        ),
    ] = 0,
    throttle_rate: Annotated[
        float, typer.Option(metavar="SHARE", min=0, max=1, help="share answered 429")
    ] = 0,
    drop_rate: Annotated[
        float, typer.Option(metavar="SHARE", min=0, max=1, help="share of connections dropped")
    ] = 0,
    lost_response_rate: Annotated[
        float,
        typer.Option(
            metavar="SHARE", min=0, max=1, help="share of writes done whose answer is lost"
        ),
    ] = 0,
    rate_limit: Annotated[
        float | None, typer.Option(metavar="RPS", min=0.1, help="token bucket, requests/s")
    ] = None,
    rate_limit_per_key: Annotated[
        bool,
        typer.Option(
            "--rate-limit-per-key",
            help="one --rate-limit bucket per API key: one sandbox for many apps",
        ),
    ] = False,
    seed: Annotated[
        int, typer.Option(metavar="N", help="seed of the sandbox's random choices")
    ] = 0,
    user_key_field: Annotated[
        str,
        typer.Option(metavar="NAME", help="how user objects spell the user key: user_key or key"),
    ] = "user_key",
    unknown_attributes: Annotated[
        str,
        typer.Option(
            metavar="MODE",
            help="attributes that are not standard fields: accept, ignore or reject (400)",
        ),
    ] = "accept",
) -> None:
    """Serve the local User.com sandbox until stopped (state at /__sandbox__/state).

    By default it answers as User.com documents its API: update_or_create answers only
    "created" and "id", names over 40 and city/phone over 64 characters are refused (400), and
    with --api-key only that key is accepted.
    """
    err = stderr()
    try:
        key = _sandbox_key(api_key)
        checks.port(port)
        options = SandboxOptions(
            api_key=key,
            forced=tuple(parse_forced(spec, called="--force") for spec in force or ()),
            latency_ms=latency_ms,
            error_rate=error_rate,
            throttle_rate=throttle_rate,
            drop_rate=drop_rate,
            lost_response_rate=lost_response_rate,
            rate_limit_rps=rate_limit,
            rate_limit_per_key=rate_limit_per_key,
            seed=seed,
            user_key_field=checks.choice("--user-key-field", user_key_field, KEY_FIELDS),
            unknown_attributes=checks.choice(
                "--unknown-attributes", unknown_attributes, UNKNOWN_ATTRIBUTES
            ),
        )
        with contextlib.suppress(KeyboardInterrupt):
            run(options, port, log_level="warning", on_listening=_announce)
    except (UsageError, ValueError, ListenError) as problem:
        err.print(refusal(problem), highlight=False)
        raise typer.Exit(EXIT_USAGE) from problem


def _shown(path: Path) -> str:
    """A path as short as it can be told: relative to here when it is below here."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def state_tables(state: dict[str, Any]) -> list[Table]:
    users = Table(title=f"sandbox users ({len(state.get('users', []))})")
    for column in ("id", "custom_id", "email", "user_key"):
        users.add_column(column)
    for user in state.get("users", [])[:20]:
        users.add_row(*(str(user.get(c)) for c in ("id", "custom_id", "email", "user_key")))
    companies = Table(title=f"sandbox companies ({len(state.get('companies', []))})")
    for column in ("id", "custom_id", "name", "member user ids"):
        companies.add_column(column)
    for company in state.get("companies", [])[:20]:
        members = ", ".join(str(member) for member in company.get("employees") or ())
        companies.add_row(*(str(company.get(c)) for c in ("id", "custom_id", "name")), members)
    totals = Table(title="sandbox totals")
    totals.add_column("what")
    totals.add_column("count", justify="right")
    for what in ("users", "companies", "events", "site_views"):
        totals.add_row(what, str(len(state.get(what, []))))
    totals.add_row("requests received", str(state.get("request_count")))
    return [users, companies, totals]


def demo(
    events: Annotated[Path, typer.Option(metavar="FILE", help="events to send")] = EXAMPLES
    / "events.jsonl",
    config: Annotated[Path, typer.Option(metavar="FILE", help="destination config")] = EXAMPLES
    / "config.json",
) -> None:
    """Start the sandbox, send the example events to it, and show what it now holds."""
    console = Console()
    try:
        cfg = load_config(config)
        with serve_in_thread(SandboxOptions(api_key=cfg.api_key)) as url:
            console.print(f"[bold]sandbox[/bold] on {url}")
            console.print(
                plain(f"sending {_shown(events)} as {cfg.base_url}"), highlight=False, markup=False
            )
            with open_source(str(events)) as source:
                summary, tally = run_send(
                    source,
                    cfg,
                    ledger=None,
                    options=DeliveryOptions(concurrency=8, base_url=url),
                    sink=None,
                    err=stderr(),
                    total=count_events(str(events)),
                    retry_rejected=False,
                )
            state = httpx.get(f"{url}/__sandbox__/state").json()
    except UsageError as problem:
        stderr().print(refusal(problem))
        raise typer.Exit(2) from problem
    console.print(summary_table(summary, "usercom demo"))
    for table in state_tables(state):
        console.print(table)
    for words in final_words(summary, tally, has_ledger=False):
        stderr().print(plain(words), highlight=False, markup=False)
    raise typer.Exit(exit_status(summary, tally))
