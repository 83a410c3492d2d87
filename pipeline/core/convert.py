"""Value conversions named by the mapping tables; each gives a value or a warning, never raises.

>>> gender_code("Male"), status_code("v")
((2, None), (1, None))
>>> epoch_seconds("2021-01-04T14:13:05.801+05:30"), epoch_seconds(1609769585801)
((1609749785, None), (1609769585, None))
>>> epoch_seconds("soon")[1]
'Invalid timestamp "soon": left out'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

from pipeline.core.types import JSON, as_text

Converted = tuple[JSON, str | None]
Convert = Literal["identity", "gender_code", "status_code", "epoch_seconds"]

_GENDER = MappingProxyType({"u": 1, "unknown": 1, "m": 2, "male": 2, "f": 3, "female": 3})
_STATUS = MappingProxyType({"v": 1, "visitor": 1, "u": 2, "user": 2})
_NUMBER = re.compile(r"\d+(\.\d+)?")
# Epoch values this large are milliseconds (SPEC §12.14): 10^11 s is the year 5138.
_MILLIS_FROM = 10**11
_MAX_DIGITS = 4000  # Python refuses to parse longer integers; no date needs them
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _coded(table: Mapping[str, int], field: str, value: JSON) -> Converted:
    code = table.get(value.strip().lower()) if isinstance(value, str) else None
    if code is None:
        allowed = "/".join(table)
        return None, f'Invalid value "{as_text(value)}" for {field}: left out (allowed: {allowed})'
    return code, None


def gender_code(value: JSON) -> Converted:
    return _coded(_GENDER, "gender", value)


def status_code(value: JSON) -> Converted:
    return _coded(_STATUS, "status", value)


def _from_number(number: int | float) -> int:
    if isinstance(number, int):
        return number // 1000 if number >= _MILLIS_FROM else number
    return math.floor(number / 1000 if number >= _MILLIS_FROM else number)


def _from_iso(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Subtracting aware datetimes never leaves the calendar (0001-01-01T00:30+01:00 is a
    # valid instant before year 1 in UTC); days and seconds drop the microseconds: floor.
    since = moment - _EPOCH
    return since.days * 86_400 + since.seconds


def _from_digits(text: str) -> int | None:
    """A digit string, fraction allowed: its whole part is its floor (it has no sign)."""
    whole = text.partition(".")[0]
    if len(whole) > _MAX_DIGITS:
        return None
    return _from_number(int(whole))


def epoch_seconds(value: JSON) -> Converted:
    seconds: int | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        finite = isinstance(value, int) or math.isfinite(value)
        seconds = _from_number(value) if finite else None
    elif isinstance(value, str):
        text = value.strip()
        seconds = _from_digits(text) if _NUMBER.fullmatch(text) else _from_iso(text)
    if seconds is None:
        return None, f'Invalid timestamp "{as_text(value)[:80]}": left out'
    return seconds, None


def identity(value: JSON) -> Converted:
    return value, None


CONVERTERS: Mapping[Convert, Callable[[JSON], Converted]] = MappingProxyType(
    {
        "identity": identity,
        "gender_code": gender_code,
        "status_code": status_code,
        "epoch_seconds": epoch_seconds,
    }
)
