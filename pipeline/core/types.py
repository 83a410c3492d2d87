"""Frozen JSON values: untrusted input is frozen once at the edge and thawed only for output.

>>> frozen = freeze({"a": [1, {"b": None}]})
>>> frozen["a"]
(1, mappingproxy({'b': None}))
>>> thaw(frozen)
{'a': [1, {'b': None}]}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeAlias

JSON: TypeAlias = "bool | int | float | str | tuple[JSON, ...] | Mapping[str, JSON] | None"
JSONObject: TypeAlias = Mapping[str, JSON]

EMPTY: JSONObject = MappingProxyType({})
# For `isinstance(value, OBJECT_TYPES)`: the same answer as against Mapping, but frozen objects
# (MappingProxyType) and raw ones (dict) match by type, before the ABC's much slower check.
OBJECT_TYPES = (MappingProxyType, dict, Mapping)
_MAX_BITS = 13_000  # about 3,900 decimal digits, under Python's 4,300-digit print limit


def freeze(value: object) -> JSON:
    """Deep-copy a parsed-JSON-like value into read-only mappings and tuples.

    Anything that JSON cannot hold (sets, objects, NaN) becomes its string form, so later
    stages only ever see JSON shapes.
    """
    # Exact JSON types first (what json.loads gives): one type lookup each, not a chain of
    # isinstance checks against unions and ABCs; anything else takes the general path below.
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value  # type: ignore[return-value]
    if type(value) is dict:
        # Through freeze_object, as below: the frames per level set how deep an event may be.
        return freeze_object(value)
    if type(value) is int:
        return value if value.bit_length() <= _MAX_BITS else None
    if type(value) is list:
        return tuple([freeze(v) for v in value])
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_BITS:
        return None  # beyond what str() and json.dumps can print: no JSON can carry it
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, OBJECT_TYPES):
        return freeze_object(value)
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return str(value)


def freeze_object(value: Mapping[Any, object]) -> JSONObject:
    """`freeze` for a mapping, typed as the read-only object it returns."""
    return MappingProxyType({str(k): freeze(v) for k, v in value.items()})


def thaw(value: JSON) -> Any:
    """Plain dicts and lists again, for JSON output."""
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool or kind is float:
        return value
    if type(value) is MappingProxyType:
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):  # before the Mapping check, which is slow for no mapping
        return [thaw(v) for v in value]
    if isinstance(value, OBJECT_TYPES):
        return {k: thaw(v) for k, v in value.items()}
    return value


def as_object(value: JSON) -> JSONObject | None:
    """The value when it is a JSON object, else None."""
    return value if isinstance(value, OBJECT_TYPES) else None


def is_present(value: JSON) -> bool:
    """SPEC §2: present means not null/missing and not the empty string; 0, false, [] count."""
    return value is not None and value != ""


def as_text(value: JSON) -> str:
    """How an identifier reads when placed in a URL, the way a JavaScript caller would print it.

    >>> as_text(12), as_text(1.0), as_text(True), as_text("a b")
    ('12', '1', 'true', 'a b')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(thaw(value), separators=(",", ":"), ensure_ascii=False)
