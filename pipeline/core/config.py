"""The destination config (SPEC §1), parsed once into a frozen `Config`.

>>> cfg = parse_config({"apiKey": "k" * 64, "appSubdomain": "https://ACME.user.com/"}).unwrap()
>>> cfg.subdomain, cfg.base_url
('acme', 'https://acme.user.com/api/public')
>>> cfg
Config(subdomain='acme', api_key='…(64 chars)', user_attributes=(), user_events=(), \
company_attributes=())
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from returns.result import Failure, Result, Success

from pipeline.core import errors
from pipeline.core.errors import PipelineError
from pipeline.core.types import OBJECT_TYPES

Renames = tuple[tuple[str, str], ...]

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_KEY = re.compile(r"[\x21-\x7e]+")


def mask(secret: str) -> str:
    """How a key is shown to people: its length only. Even its first characters are a part of
    it given away, and tell two keys apart no better than the config file they come from.

    >>> mask("abcdefgh12345678"), mask("")
    ('…(16 chars)', '…(0 chars)')
    """
    return f"…({len(secret)} chars)"


# Where User.com's public API lives on an app's origin: the one place the path is written.
API_PATH = "/api/public"


@dataclass(frozen=True, slots=True)
class EventRule:
    """One `userEvents` entry: a RudderStack event renamed, with its property renames."""

    rs_event_name: str
    user_event_name: str
    properties: Renames


@dataclass(frozen=True, slots=True)
class Config:
    subdomain: str
    api_key: str = field(repr=False)
    user_attributes: Renames = ()
    user_events: tuple[EventRule, ...] = ()
    company_attributes: Renames = ()
    # Mapping entries that were skipped, and why: worth a warning to whoever wrote them.
    ignored: tuple[str, ...] = field(default=(), compare=False)

    @property
    def origin(self) -> str:
        return f"https://{self.subdomain}.user.com"

    @property
    def base_url(self) -> str:
        return self.origin + API_PATH

    def __repr__(self) -> str:
        return (
            f"Config(subdomain={self.subdomain!r}, api_key={mask(self.api_key)!r}, "
            f"user_attributes={self.user_attributes!r}, user_events={self.user_events!r}, "
            f"company_attributes={self.company_attributes!r})"
        )


def normalize_subdomain(raw: str) -> str | None:
    """The bare DNS label for friendly forms, or None when it could point elsewhere.

    >>> [normalize_subdomain(s) for s in (" acme ", "acme.user.com", "http://a-1.user.com/")]
    ['acme', 'acme', 'a-1']
    >>> [normalize_subdomain(s) for s in ("a.b", "evil.com/x", "a@b", "acme.user.com.evil")]
    [None, None, None, None]
    """
    if not raw.isascii():  # lower() would turn e.g. the Kelvin sign into an ASCII "k"
        return None
    text = raw.strip().lower()
    for scheme in ("https://", "http://"):
        text = text.removeprefix(scheme)
    text = text.removesuffix("/").removesuffix(".user.com")
    return text if _LABEL.fullmatch(text) else None


def _renames(raw: object, where: str, ignored: list[str]) -> Renames:
    """`{from, to}` entries: blank `from` ignored, the last entry for a `from` wins."""
    if not raw:  # absent or empty, as most configs leave most mappings
        return ()
    chosen: dict[str, str] = {}
    for number, entry in enumerate(raw if isinstance(raw, list | tuple) else (), start=1):
        if not isinstance(entry, OBJECT_TYPES):
            ignored.append(f"{where} entry {number} is ignored: it is not an object")
            continue
        source, target = entry.get("from"), entry.get("to")
        if not (isinstance(source, str) and source.strip()):
            ignored.append(f"{where} entry {number} is ignored: its 'from' is empty")
        elif not (isinstance(target, str) and target):
            ignored.append(f"{where} entry {number} ({source!r}) is ignored: its 'to' is empty")
        else:
            chosen.pop(source, None)
            chosen[source] = target
    return tuple(chosen.items())


def _event_rules(raw: object, ignored: list[str]) -> tuple[EventRule, ...]:
    if not raw:
        return ()
    rules = []
    for number, entry in enumerate(raw if isinstance(raw, list | tuple) else (), start=1):
        where = f"userEvents entry {number}"
        if not isinstance(entry, OBJECT_TYPES):
            ignored.append(f"{where} is ignored: it is not an object")
            continue
        source, target = entry.get("rsEventName"), entry.get("userEventName")
        if isinstance(source, str) and source.strip():
            name = target if isinstance(target, str) and target.strip() else source
            renames = _renames(entry.get("eventProperties"), f"{where} eventProperties", ignored)
            rules.append(EventRule(source, name, renames))
        else:
            ignored.append(f"{where} is ignored: its 'rsEventName' is empty")
    return tuple(rules)


def _list_error(raw: Mapping[str, object]) -> PipelineError | None:
    for key in ("userAttributesMapping", "userEvents", "companyAttributesMapping"):
        value = raw.get(key)
        if value is not None and not isinstance(value, list | tuple):
            return errors.configuration(
                f"{key} must be a list of mapping entries; got {type(value).__name__}. "
                "Fix the destination config."
            )
    return None


def unreadable_config(where: str, error: OSError | ValueError) -> str:
    """Why a config file could not be read, in the words of someone who edits it.

    >>> unreadable_config("c.json", json.JSONDecodeError("Expecting value", "[1,", 3))
    'config c.json is not valid JSON (line 1 column 4)'
    >>> unreadable_config("c.json", FileNotFoundError(2, "No such file or directory"))
    'cannot read config c.json: No such file or directory'
    """
    if isinstance(error, json.JSONDecodeError):
        return f"config {where} is not valid JSON (line {error.lineno} column {error.colno})"
    if isinstance(error, UnicodeDecodeError):
        return f"config {where} is not UTF-8 text (byte {error.start})"
    if isinstance(error, OSError) and error.strerror:
        return f"cannot read config {where}: {error.strerror}"
    return f"cannot read config {where}: {error}"


def _not_an_object(raw: object) -> PipelineError:
    # Only the type is named: a string given here may well be the API key itself.
    if raw is None:
        return errors.configuration(
            "Destination config is missing: give an object with apiKey and appSubdomain"
        )
    return errors.configuration(
        "Destination config must be an object with apiKey and appSubdomain; "
        f"got {type(raw).__name__}"
    )


def parse_config(raw: object) -> Result[Config, PipelineError]:
    """destination.Config -> Config, or the configuration error a user can act on.

    A whole destination (`{"Config": {...}}`, as rudder-transformer items hold it) is taken
    as its `Config`, as `Destination`, `usercom send` and `usercom serve` take it.
    """
    inner = raw.get("Config") if isinstance(raw, OBJECT_TYPES) else None
    if inner is not None and isinstance(inner, OBJECT_TYPES):  # None first: Mapping's check is slow
        raw = inner
    if not isinstance(raw, OBJECT_TYPES):
        return Failure(_not_an_object(raw))
    key, sub = raw.get("apiKey"), raw.get("appSubdomain")
    for name, value in (("apiKey", key), ("appSubdomain", sub)):
        if value is not None and not isinstance(value, str):
            return Failure(
                errors.configuration(
                    f"{name} must be a string (in quotes); got {type(value).__name__}. "
                    "Fix the destination config."
                )
            )
    if not isinstance(key, str) or not key.strip():
        return Failure(
            errors.configuration(
                "API Key is required: set apiKey to your User.com public REST API key "
                "(Settings > App settings > Advanced > Public REST API keys)"
            )
        )
    if not _KEY.fullmatch(key.strip()):
        return Failure(
            errors.configuration("API Key is malformed: it must be printable ASCII with no spaces")
        )
    if not isinstance(sub, str) or not sub.strip():
        return Failure(
            errors.configuration(
                "App Subdomain is required: set appSubdomain to the part before .user.com "
                "(e.g. acme for acme.user.com)"
            )
        )
    subdomain = normalize_subdomain(sub)
    if subdomain is None:
        # Echo what was given, but never the key, even when it was pasted in by mistake.
        shown = "" if key.strip() in sub else f" {sub.strip()[:80]!r}"
        return Failure(
            errors.configuration(
                f"App Subdomain{shown} is not a valid User.com subdomain: "
                "use the single name before .user.com (letters, digits, hyphens)"
            )
        )
    list_error = _list_error(raw)
    if list_error is not None:
        return Failure(list_error)
    ignored: list[str] = []
    return Success(
        Config(
            subdomain=subdomain,
            api_key=key.strip(),
            user_attributes=_renames(
                raw.get("userAttributesMapping"), "userAttributesMapping", ignored
            ),
            user_events=_event_rules(raw.get("userEvents"), ignored),
            company_attributes=_renames(
                raw.get("companyAttributesMapping"), "companyAttributesMapping", ignored
            ),
            ignored=tuple(ignored),
        )
    )
