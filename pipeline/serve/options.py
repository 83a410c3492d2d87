"""What `usercom serve` runs with (DELIVERY §6): the apps, the write keys, the ledgers, limits.

Everything here is checked before the service opens a ledger or a socket: a problem is a
`ServeConfigError` whose text is the one line the command prints before exiting 2.

CONFIG.json is one app's destination config (SPEC §1 keys, or `{"Config": {...}}`), or
`{"sources": [{"writeKey": K, "destination": {...}}, ...]}` for several. Each write key names
one app (a subdomain); two write keys of one subdomain share that app (its ledger, lanes,
identity cache and rate budget), so they must carry the same destination config.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from returns.result import Failure, Success

from pipeline.core.config import Config, parse_config, unreadable_config
from pipeline.delivery.incoming import MAX_EVENT_BYTES
from pipeline.delivery.pg import PgLocation

KB = 1024
MB = 1024 * KB
GB = 1024 * MB

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|sec|m|min|h|d)?\s*", re.IGNORECASE)
_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


MAX_DURATION_S = 3650 * 86400.0


class ServeConfigError(ValueError):
    """A problem with the service's config or options: `str(error)` is the one line to print."""


def duration(option: str, raw: str | float) -> float:
    """Seconds from `90`, `30s`, `15m`, `24h` or `7d`; a finite number > 0.

    >>> duration("--give-up-after", "24h"), duration("--max-outage", "90"), duration("x", 2.5)
    (86400.0, 90.0, 2.5)
    >>> duration("--give-up-after", "soon")
    Traceback (most recent call last):
    ...
    pipeline.serve.options.ServeConfigError: --give-up-after must be a duration like 90s, 30m, 24h or 7d (a number alone is seconds): got 'soon'
    """  # noqa: E501
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    else:
        found = _DURATION.fullmatch(str(raw))
        if found is None:
            raise ServeConfigError(
                f"{option} must be a duration like 90s, 30m, 24h or 7d (a number alone is "
                f"seconds): got {raw!r}"
            )
        unit = found.group(2).lower() if found.group(2) else None
        seconds = float(found.group(1)) * _UNITS[unit]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ServeConfigError(f"{option} must be a duration > 0: got {raw!r}")
    if seconds > MAX_DURATION_S:  # a wait that long overflows the clocks' timeouts
        raise ServeConfigError(f"{option} must be a duration of at most 3650d: got {raw!r}")
    return seconds


def lease_ttl(raw: str | float) -> float:
    """`--lease-ttl`: a duration of at least a second (a lease is renewed every third of it,
    each time a PostgreSQL round trip)."""
    seconds = duration("--lease-ttl", raw)
    if seconds < 1.0:
        raise ServeConfigError(f"--lease-ttl must be a duration of at least 1s: got {raw!r}")
    return seconds


def retention_days(option: str, raw: str | float) -> float:
    """Days from a duration (`7d`, `36h`, `90m`) or a number alone, which counts days as the
    option always has; 0 or more (0: bodies go at the next hourly sweep).

    >>> retention_days("--keep-days", "36h"), retention_days("--keep-days", "7")
    (1.5, 7.0)
    """
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        days = float(raw)
    else:
        found = _DURATION.fullmatch(str(raw))
        unit = found.group(2) if found is not None else None
        number = float(found.group(1)) if found is not None else math.nan
        days = number if unit is None else number * _UNITS[unit.lower()] / _UNITS["d"]
    if not math.isfinite(days) or days < 0:
        raise ServeConfigError(
            f"{option} must be a duration like 7d or 36h (a number alone is days), 0 or more: "
            f"got {raw!r}"
        )
    return days


@dataclass(frozen=True, slots=True)
class Sources:
    """The apps (subdomain -> config) and who may send to them (write key -> subdomain).

    `open` is True when no write key was named at all: any request is accepted (the one-app
    form without --write-key, for a trusted network; the command says so at start)."""

    apps: Mapping[str, Config]
    write_keys: Mapping[str, str]

    @property
    def open(self) -> bool:
        return not self.write_keys


def _check_write_key(key: str, where: str) -> None:
    """A key HTTP Basic auth can carry: the user name ends at the first ':', so a key holding
    one could never authenticate. The key itself is never shown."""
    if not key.strip():
        raise ServeConfigError(f"{where} must not be empty")
    if ":" in key:
        raise ServeConfigError(
            f"{where} contains ':', which HTTP Basic auth cannot carry in the user name (no "
            "client could ever authenticate with it): choose a write key without ':'"
        )


def _config_of(raw: object, where: str) -> Config:
    config = raw.get("Config", raw) if isinstance(raw, Mapping) else raw
    match parse_config(config):
        case Success(Config() as cfg):
            return cfg
        case Failure(problem):
            raise ServeConfigError(f"{where}: {problem.message}")
    raise ServeConfigError(f"{where}: not understood")


def parse_sources(raw: object, write_keys: tuple[str, ...], where: str) -> Sources:
    """The sources of a parsed CONFIG.json (`where` names it in messages)."""
    if isinstance(raw, Mapping) and "sources" in raw:
        if write_keys:
            raise ServeConfigError(
                f"--write-key is for a config of one app; {where} lists sources, each with its "
                "writeKey: remove --write-key"
            )
        listed = raw["sources"]
        if not isinstance(listed, list) or not listed:
            raise ServeConfigError(
                f"{where}: sources must be a non-empty list of "
                '{"writeKey": ..., "destination": {...}}'
            )
        apps: dict[str, Config] = {}
        keys: dict[str, str] = {}
        for number, source in enumerate(listed, start=1):
            here = f"{where}: source {number}"
            if not isinstance(source, Mapping):
                raise ServeConfigError(f"{here} is not an object")
            key = source.get("writeKey")
            if not isinstance(key, str) or not key.strip():
                raise ServeConfigError(f"{here} has no writeKey (a non-empty string)")
            _check_write_key(key, f"{here}: its writeKey")
            if key in keys:
                raise ServeConfigError(f"{here} repeats the writeKey of an earlier source")
            if "destination" not in source:
                raise ServeConfigError(
                    f"{here} has no destination: give it one app's apiKey, appSubdomain "
                    "and mappings"
                )
            cfg = _config_of(source["destination"], here)
            known = apps.get(cfg.subdomain)
            if known is not None and known != cfg:
                raise ServeConfigError(
                    f"{here} names app {cfg.subdomain} with another destination config than an "
                    "earlier source: the sources of one app share its queue, so give them one "
                    "config"
                )
            apps[cfg.subdomain] = cfg
            keys[key] = cfg.subdomain
        return Sources(MappingProxyType(apps), MappingProxyType(keys))
    cfg = _config_of(raw, where)
    for number, key in enumerate(write_keys, start=1):
        _check_write_key(key, "--write-key" if len(write_keys) == 1 else f"write key {number}")
    return Sources(
        MappingProxyType({cfg.subdomain: cfg}),
        MappingProxyType(dict.fromkeys(write_keys, cfg.subdomain)),
    )


def load_sources(path: Path, write_keys: tuple[str, ...] = ()) -> Sources:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ServeConfigError(unreadable_config(str(path), error)) from error
    return parse_sources(raw, write_keys, f"config {path}")


def ledger_paths(
    path: Path | PgLocation, apps: tuple[str, ...], *, create: bool = True
) -> Mapping[str, Path | PgLocation]:
    """Where each app's ledger is: with one app PATH itself (or `PATH/<subdomain>.sqlite` when
    PATH is a folder); with several, PATH is a folder (created when its parent exists, unless
    `create` is False: then `create_ledger_folders` makes it later) holding
    `<subdomain>.sqlite` per app. A PostgreSQL ledger holds every app (a column tells them
    apart)."""
    if isinstance(path, PgLocation):
        return MappingProxyType(dict.fromkeys(apps, path))
    if len(apps) == 1 and not path.is_dir():
        if not path.absolute().parent.is_dir():
            raise ServeConfigError(
                f"--ledger's folder does not exist: {str(path.absolute().parent)!r} "
                "(create it first)"
            )
        return MappingProxyType({apps[0]: path})
    if path.exists() and not path.is_dir():
        raise ServeConfigError(
            f"--ledger {str(path)!r} is a file, but the config has {len(apps)} apps: give a "
            "folder, which will hold one <subdomain>.sqlite per app"
        )
    if not path.exists():
        if not path.absolute().parent.is_dir():
            raise ServeConfigError(
                f"--ledger's folder does not exist: {str(path.absolute().parent)!r} "
                "(create it first)"
            )
        if create:
            _make_folder(path)
    return MappingProxyType({app: path / f"{app}.sqlite" for app in apps})


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except OSError as error:
        raise ServeConfigError(f"cannot create --ledger folder {path}: {error}") from error


def create_ledger_folders(ledgers: Mapping[str, Path | PgLocation]) -> None:
    """Make the folder `ledger_paths(..., create=False)` named but left to be made."""
    for folder in {path.parent for path in ledgers.values() if isinstance(path, Path)}:
        if not folder.is_dir():
            _make_folder(folder)


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Everything the service runs with. The fields after `max_headers` are tuning that the
    command does not expose (tests shorten them)."""

    sources: Sources
    ledgers: Mapping[str, Path | PgLocation]
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str | None = None
    concurrency: int = 8
    rate: float | None = None
    give_up_after: float = 86400.0
    max_queued: int = 1_000_000
    keep_days: float = 7.0
    transformer_token: str | None = field(default=None, repr=False)
    console_token: str | None = field(default=None, repr=False)  # None: no /console/ at all
    max_outage: float = 1800.0
    lease_ttl: float = 30.0  # a PostgreSQL ledger's lane leases (DELIVERY §7)
    max_connections: int = 1000  # client connections served at once (a few more get 503)
    header_timeout: float = 10.0  # a request head must arrive within this
    body_timeout: float = 60.0  # a request body must arrive within this of its head
    max_header_bytes: int = 64 * KB
    max_headers: int = 100
    retry_initial: float = 30.0  # a failed event's first wait before it is tried again
    retry_max: float = 600.0  # the longest wait between two tries of a failed event
    probe_initial: float = 5.0  # a paused app's first probe wait, growing 2x
    probe_max: float = 60.0
    event_seconds: float = 30.0  # retries of one event within one delivery round
    event_attempts: int = 6  # attempts of one event within one delivery round
    min_free_bytes: int = GB
    max_body: int = 4 * MB
    max_event: int = MAX_EVENT_BYTES
    max_events: int = 10_000  # per request; the SDKs send a few hundred at most
    drain_seconds: float = 10.0  # SIGTERM: how long in-flight deliveries may take to end
    page: int = 500  # events read from the ledger per delivery step

    def retry_delay(self, failures: int) -> float:
        """How long a failed event waits before its next try: doubling, capped.

        >>> options = ServeOptions(Sources({}, {}), {})
        >>> [options.retry_delay(n) for n in (1, 2, 3, 6, 20)]
        [30.0, 60.0, 120.0, 600.0, 600.0]
        """
        return min(self.retry_max, self.retry_initial * 2.0 ** min(max(failures - 1, 0), 30))
