"""``python -m pipeline.sandbox``: serve one sandbox in the foreground, for other test harnesses.

It prints ``sandbox listening on http://127.0.0.1:PORT`` on stdout once it accepts connections
(with ``--port 0``, the port picked), then serves until SIGINT (exit 130) or SIGTERM (exit 143).
Bad options, or a port that cannot be listened on, give one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import NoReturn

from pipeline.listening import MAX_PORT, ListenError
from pipeline.sandbox.options import FORCED_EXAMPLE, FORCED_SYNTAX, SandboxOptions, parse_forced
from pipeline.sandbox.server import HOST, run
from pipeline.sandbox.users import UNKNOWN_ATTRIBUTE_MODES, USER_KEY_FIELDS

PROG = "python -m pipeline.sandbox"
USAGE_ERROR = 2
INTERRUPTED = 130
TERMINATED = 143
EMPTY_KEY = "must not be empty (it would refuse every key): leave it out to accept any key"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _number(check: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def convert(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and check(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {raw!r}")
        return value

    return convert


_share = _number(lambda value: 0 <= value <= 1, "a number between 0 and 1")
_non_negative = _number(lambda value: value >= 0, "a finite number >= 0")
_positive = _number(lambda value: value > 0, "a finite number > 0")


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipeline.sandbox``."""
    cli = _Parser(
        prog=PROG,
        description="Serve a local, in-memory User.com sandbox on 127.0.0.1 until stopped "
        "(everything stored: GET /__sandbox__/state).",
    )
    cli.add_argument(
        "--port", type=int, default=8000, help=f"port on {HOST}, 0..{MAX_PORT} (0: a free one)"
    )
    cli.add_argument("--api-key", help="the only accepted token (default: any non-empty token)")
    cli.add_argument(
        "--user-key-field",
        choices=USER_KEY_FIELDS,
        default="user_key",
        help="name of the cookie key in user objects: user_key (the docs' field table, "
        "RudderStack's mocks) or key (the v2 docs' examples); ?key= searches work either way "
        "(default: %(default)s)",
    )
    cli.add_argument(
        "--unknown-attributes",
        choices=UNKNOWN_ATTRIBUTE_MODES,
        default="accept",
        help="user body keys that are no standard field: accept (store as custom attributes), "
        "ignore (drop silently) or reject (400 naming them) (default: %(default)s)",
    )
    cli.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="RULE",
        help=f"force a status, {FORCED_SYNTAX!r}: ROUTE is a route name or a path prefix under "
        f"/api/public, xN forces only the first N matching requests (e.g. {FORCED_EXAMPLE!r}); "
        "repeatable, the first rule with requests left wins",
    )
    cli.add_argument("--latency-ms", type=_non_negative, default=0.0, help="delay per request")
    cli.add_argument(
        "--error-rate", type=_share, default=0.0, help="share answered 500/502/503/504"
    )
    cli.add_argument("--throttle-rate", type=_share, default=0.0, help="share answered 429")
    cli.add_argument("--drop-rate", type=_share, default=0.0, help="share of connections dropped")
    cli.add_argument(
        "--lost-response-rate", type=_share, default=0.0, help="share of writes done, answer lost"
    )
    cli.add_argument("--rate-limit", type=_positive, help="token bucket, requests per second")
    cli.add_argument(
        "--rate-limit-per-key",
        action="store_true",
        help="one --rate-limit bucket per API key (one sandbox standing in for many apps)",
    )
    cli.add_argument("--seed", type=int, default=0, help="seed of the random source")
    cli.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn's log level (info shows each request), on stderr",
    )
    return cli


def options_from(args: argparse.Namespace) -> SandboxOptions:
    """The sandbox options the parsed arguments ask for (``ValueError`` when they are bad)."""
    return SandboxOptions(
        api_key=args.api_key,
        user_key_field=args.user_key_field,
        unknown_attributes=args.unknown_attributes,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        throttle_rate=args.throttle_rate,
        drop_rate=args.drop_rate,
        lost_response_rate=args.lost_response_rate,
        rate_limit_rps=args.rate_limit,
        rate_limit_per_key=args.rate_limit_per_key,
        forced=tuple(parse_forced(spec, called="--force") for spec in args.force),
        seed=args.seed,
    )


def _terminate(_: int, __: FrameType | None) -> None:
    raise SystemExit(TERMINATED)


def _announce(url: str) -> None:
    print(f"sandbox listening on {url}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, listen, announce, serve; the exit status."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.api_key is not None and not args.api_key.strip():
        cli.error(f"argument --api-key: {EMPTY_KEY}")
    if not 0 <= args.port <= MAX_PORT:
        cli.error(f"argument --port: must be 0..{MAX_PORT} (0 picks a free one), got {args.port}")
    try:
        options = options_from(args)
    except ValueError as error:
        cli.error(str(error))
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then raises the signal again: exit
    # 130 / 143 quietly then, even when started with SIGINT ignored (a shell's `cmd &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        run(options, args.port, log_level=args.log_level, on_listening=_announce)
    except ListenError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
