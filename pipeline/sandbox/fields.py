"""Coercion of request values, DRF-style: each returns the clean value or raises a 400."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pipeline.sandbox.errors import invalid

Body = Mapping[str, Any]


def as_string(field: str, value: Any, max_length: int | None = None) -> str | None:
    """A string (numbers are turned into strings, as DRF's CharField does), or None.

    >>> as_string("custom_id", 42)
    '42'
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise invalid(field, "Not a valid string.")
    text = str(value)
    if max_length is not None and len(text) > max_length:
        raise invalid(field, f"Ensure this field has no more than {max_length} characters.")
    return text


def as_int(field: str, value: Any) -> int:
    """An integer, also from a string of digits (DRF's IntegerField).

    >>> as_int("user_id", "7")
    7
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise invalid(field, "A valid integer is required.")


def as_choice(field: str, value: Any, choices: Mapping[int, str]) -> str:
    """The name of an integer choice: ``choices[value]``.

    >>> as_choice("gender", 2, {1: "unknown", 2: "male", 3: "female"})
    'male'
    """
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise invalid(field, f'"{value}" is not a valid choice.')
    return choices[value]


def as_names(field: str, value: Any) -> list[str]:
    """A list of non-empty names (tags).

    >>> as_names("tags", ["vip", "beta"])
    ['vip', 'beta']
    """
    if not isinstance(value, list):
        raise invalid(field, f'Expected a list of items but got type "{type(value).__name__}".')
    if not all(isinstance(name, str) and name for name in value):
        raise invalid(field, "Each item must be a non-empty string.")
    return list(value)


def as_unix_seconds(field: str, value: Any) -> int | float:
    """UNIX seconds, as the events endpoint documents them.

    >>> as_unix_seconds("timestamp", 1426967129)
    1426967129
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise invalid(field, "Timestamp must be a number of UNIX seconds.")


def as_timestamp(field: str, value: Any) -> int | float | str:
    """UNIX seconds (a number) or an ISO-8601 string, returned unchanged.

    >>> as_timestamp("timestamp", "2021-01-04T14:13:05.801+05:30")
    '2021-01-04T14:13:05.801+05:30'
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return value
    raise invalid(field, "Timestamp must be UNIX seconds or an ISO-8601 datetime.")


def required(body: Body, field: str) -> Any:
    """The value of a required field, or a 400 when it is absent or null."""
    value = body.get(field)
    if value is None:
        raise invalid(field, "This field is required.")
    return value
