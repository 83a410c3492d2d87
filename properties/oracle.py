"""An independent reading of the SPEC, for properties to compare the library against.

Nothing here imports the library: the path lists and rules are restated from SPEC §2, §4, §5.
"""

from __future__ import annotations

import json
from typing import Any

# SPEC §2, named path lists.
USER_ID = (
    "userId",
    "traits.userId",
    "traits.id",
    "context.traits.userId",
    "context.traits.id",
    "anonymousId",
)
EMAIL_ONLY = ("traits.email", "context.traits.email", "properties.email")
PHONE = ("traits.phone", "context.traits.phone", "properties.phone")


def _traits_then_context(*names: str) -> tuple[str, ...]:
    return (*(f"traits.{n}" for n in names), *(f"context.traits.{n}" for n in names))


FIRST_NAME = _traits_then_context("firstName", "firstname", "first_name")
LAST_NAME = _traits_then_context("lastName", "lastname", "last_name")
CITY = ("traits.address.city", "context.traits.address.city", "traits.city", "context.traits.city")
TIMESTAMP = ("timestamp", "originalTimestamp")

# SPEC §5.1: the standard identify fields that share their name with a standard source key,
# and where each is read from. A custom trait can never land on these names.
IDENTIFY_SHARED_FIELDS: dict[str, tuple[str, ...]] = {
    "email": EMAIL_ONLY,
    "first_name": FIRST_NAME,
    "last_name": LAST_NAME,
    "tags": _traits_then_context("tags"),
    "city": CITY,
    "region": _traits_then_context("region"),
    "country": _traits_then_context("country"),
    "timezone": _traits_then_context("timezone"),
    "gender": _traits_then_context("gender"),
    "status": _traits_then_context("status"),
}
GENDER_CODES = {"u": 1, "unknown": 1, "m": 2, "male": 2, "f": 3, "female": 3}
STATUS_CODES = {"v": 1, "visitor": 1, "u": 2, "user": 2}

INTEGRATION_NAMES = ("user", "USER", "User", "User.com", "user.com", "USER.com")

MISSING = object()
"""A value the SPEC leaves open (e.g. a gender with surrounding spaces): not checked."""


def get(message: Any, dotted: str) -> Any:
    value = message
    for step in dotted.split("."):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


def present(value: Any) -> bool:
    """SPEC §2: not null/missing, not the empty string; 0, false, [] and {} count."""
    return value is not None and not (isinstance(value, str) and value == "")


def read(message: Any, paths: tuple[str, ...]) -> Any:
    """The first present value along the paths, else None."""
    for path in paths:
        value = get(message, path)
        if present(value):
            return value
    return None


def coded(table: dict[str, int], value: Any) -> Any:
    """A gender/status code, None when left out, MISSING when the SPEC does not say."""
    if not isinstance(value, str):
        return None
    if value != value.strip():
        return MISSING
    return table.get(value.lower())


def standard_identify_field(message: Any, field: str) -> Any:
    value = read(message, IDENTIFY_SHARED_FIELDS[field])
    if value is None:
        return None
    if field == "gender":
        return coded(GENDER_CODES, value)
    if field == "status":
        return coded(STATUS_CODES, value)
    return value


def merged_traits(message: Any) -> dict[str, Any]:
    """SPEC §5.2: `{**traits, **context.traits}`."""
    traits = message.get("traits")
    context_traits = get(message, "context.traits")
    merged: dict[str, Any] = {}
    for layer in (traits, context_traits):
        if isinstance(layer, dict):
            merged.update(layer)
    return merged


def effective_renames(entries: Any) -> list[tuple[str, str]]:
    """SPEC §1: blank `from` ignored, the last entry for a `from` wins (kept where it last was)."""
    chosen: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        source, target = entry.get("from"), entry.get("to")
        if isinstance(source, str) and source.strip() and isinstance(target, str) and target:
            chosen.pop(source, None)
            chosen[source] = target
    return list(chosen.items())


def as_text(value: Any) -> str:
    """How an identifier is written into a URL (numbers as a JavaScript caller prints them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):  # SPEC-silent: compact JSON, as the library does
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def expected_lookup(message: dict[str, Any]) -> tuple[str, str, str] | str:
    """SPEC §4: (by, query key or "path", value) of the lookup, or the error message."""
    external = get(message, "context.externalId")
    for entry in external if isinstance(external, list) else []:
        if isinstance(entry, dict) and entry.get("type") == "userKey":
            key = entry.get("id")
            if (isinstance(key, str) and key != "") or (
                isinstance(key, int) and not isinstance(key, bool)
            ):
                return ("userKey", "key", as_text(key))
    integrations = message.get("integrations")
    field: Any = None
    if isinstance(integrations, dict):
        for name in INTEGRATION_NAMES:
            if isinstance(integrations.get(name), dict):
                field = integrations[name].get("lookup")
                break
    if present(field):
        chosen = as_text(field)
        if chosen.lower() == "email":
            email = read(message, EMAIL_ONLY)
            if email is None:
                return "Lookup field : email value is not present"
            return ("email", "email", as_text(email))
        if chosen.lower() == "phone":
            phone = read(message, PHONE)
            if phone is None:
                return "Lookup field : phone value is not present"
            return ("phone", "phone_number", as_text(phone))
        return f"Lookup field : {chosen} is not supported for this destination"
    if present(message.get("userId")):
        return ("userId", "path", as_text(message["userId"]))
    email = read(message, EMAIL_ONLY)
    if email is not None:
        return ("email", "email", as_text(email))
    return "Default lookup field : email value is empty"


def read_object(message: Any, paths: tuple[str, ...]) -> dict[str, Any]:
    """The first path holding an object (SPEC §2's `traits` list), else {}."""
    for path in paths:
        value = get(message, path)
        if isinstance(value, dict):
            return value
    return {}


def overlay(traits: dict[str, Any], entries: Any, standard_keys: Any) -> dict[str, Any]:
    """SPEC §5.2 step 2 (and §6, §8.2): what the overlay writes, name by name.

    Each effective `{from, to}` entry, in list order, whose `from` is present writes it under
    `to`, a later entry winning; then every trait that is neither a mapped `from` nor a
    standard source key is written under its own name, over whatever was mapped there. Both
    override the standard fields of the same name; a null written here is then dropped.
    """
    layer: dict[str, Any] = {}
    used: set[str] = set()
    for source, target in effective_renames(entries):
        if source in traits and present(traits[source]):
            layer[target] = traits[source]
            used.add(source)
    layer.update(
        (name, value)
        for name, value in traits.items()
        if name not in used and name not in standard_keys
    )
    return layer
