"""Custom maps and remaining traits laid over a standard payload (SPEC §5.2, §8.2).

>>> from pipeline.core.types import freeze_object
>>> traits = freeze_object({"plan": "pro", "age": 0, "email": "a@b.co"})
>>> dict(overlay_fields(traits, (("plan", "tier"),), frozenset({"email"})))
{'tier': 'pro', 'age': 0}
"""

from __future__ import annotations

from types import MappingProxyType

from toolz import merge

from pipeline.core import paths
from pipeline.core.config import Renames
from pipeline.core.mapping import Payload
from pipeline.core.types import EMPTY, JSON, OBJECT_TYPES, JSONObject, is_present


def overlay_fields(traits: JSONObject, renames: Renames, standard: frozenset[str]) -> JSONObject:
    """Mapped traits under their `to`, then every other non-standard trait under its own name.

    Remaining traits override mapped ones of the same name; 0 and false map too (§12.10).
    """
    mapped: dict[str, JSON] = {}
    used: set[str] = set()
    for source, target in renames:
        value = traits.get(source)
        if is_present(value):
            mapped[target] = value
            used.add(source)
    remaining = {k: v for k, v in traits.items() if k not in used and k not in standard}
    return MappingProxyType(merge(mapped, remaining))


def overlay(
    payload: Payload, traits: JSONObject, renames: Renames, standard: frozenset[str]
) -> Payload:
    return payload.merged(overlay_fields(traits, renames, standard))


def merged_traits(message: JSONObject) -> JSONObject:
    """`{**traits, **context.traits}`: context.traits wins in the identify overlay (§5.2)."""
    layers = [paths.get_path(message, p) for p in paths.TRAITS]
    objects = [layer for layer in layers if layer is not None and isinstance(layer, OBJECT_TYPES)]
    if not objects:
        return EMPTY
    return MappingProxyType(merge(*objects))
