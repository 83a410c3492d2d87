"""The named path lists of SPEC §2, as data, and the one function that reads them.

>>> from pipeline.core.types import freeze
>>> msg = freeze({"traits": {"email": ""}, "context": {"traits": {"email": "a@b.co"}}})
>>> read(msg, EMAIL)
'a@b.co'
"""

from __future__ import annotations

from typing import Any

from pipeline.core.types import JSON, OBJECT_TYPES, JSONObject

Path = tuple[str, ...]
PathList = tuple[Path, ...]


def paths(*dotted: str) -> PathList:
    return tuple(tuple(p.split(".")) for p in dotted)


def _under(prefix: str, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{prefix}.{n}" for n in names)


def _traits_then_context(*names: str) -> PathList:
    return paths(*_under("traits", names), *_under("context.traits", names))


USER_ID = paths(
    "userId", "traits.userId", "traits.id", "context.traits.userId", "context.traits.id",
    "anonymousId",
)  # fmt: skip
EMAIL = paths("traits.email", "context.traits.email", "properties.email")
PHONE = paths("traits.phone", "context.traits.phone", "properties.phone")
FIRST_NAME = _traits_then_context("firstName", "firstname", "first_name")
LAST_NAME = _traits_then_context("lastName", "lastname", "last_name")
# §12.8: plain `city` traits are read when there is no address.city.
CITY = paths(
    "traits.address.city", "context.traits.address.city", "traits.city", "context.traits.city"
)
REGION = _traits_then_context("region")
COUNTRY = _traits_then_context("country")
GENDER = _traits_then_context("gender")
STATUS = _traits_then_context("status")
TAGS = _traits_then_context("tags")
TIMEZONE = _traits_then_context("timezone")
GOOGLE_URL = _traits_then_context("googleUrl")
LINKEDIN_URL = _traits_then_context("linkedinUrl")
TWITTER_URL = _traits_then_context("twitterUrl")
FACEBOOK_URL = _traits_then_context("facebookUrl")
AVATAR = paths(
    "traits.avatar", "context.traits.avatar", "traits.avatarURL", "context.traits.avatarURL",
    "traits.avatar_URL", "context.traits.avatar_URL",
)  # fmt: skip
ADDRESS = _traits_then_context("address")
_ZIP_TOP = ("zip", "zipcode", "zip_code", "zipCode", "postalcode", "postal_code", "postalCode")
_ZIP_ADDRESS = ("zipcode", "zip_code", "zip", "zipCode", "postalcode", "postal_code", "postalCode")
ZIPCODE = paths(
    *_under("traits", _ZIP_TOP),
    *_under("traits.address", _ZIP_ADDRESS),
    *_under("context.traits", _ZIP_TOP),
    *_under("context.traits.address", _ZIP_TOP),
)
GROUP_ID = paths("groupId", "traits.groupId")
TIMESTAMP = paths("timestamp", "originalTimestamp")
PAGE_URL = paths("context.page.url", "properties.url")
PAGE_PATH = paths("context.page.path", "properties.path")
DESCRIPTION = paths("traits.description")
SIZE = paths("traits.size")
GROUP_TAGS = paths("traits.tags")
TRAITS = paths("traits", "context.traits")


def get_path(message: JSONObject, path: Path) -> JSON:
    """The value at one dotted path, or None when any step is missing or not an object.

    >>> get_path({"a": {"b": 1}}, ("a", "b")), get_path({"a": "text"}, ("a", "b"))
    (1, None)
    """
    value: Any = message
    for key in path:
        # `.get`, not `[key]`: most reads miss, and a raised KeyError costs three times a miss.
        try:
            value = value.get(key)
        except AttributeError:  # a step into text, a number or a list
            return None
        if value is None:
            return None
    found: JSON = value
    return found


def read(message: JSONObject, path_list: PathList) -> JSON:
    """The first present value along the path list (SPEC §2), or None."""
    # get_path and is_present inline: this is the hottest loop of every flow, and a call per
    # path (an identify reads about 80) cost more than the reads themselves.
    value: Any
    for path in path_list:
        value = message
        for key in path:
            try:
                value = value.get(key)
            except AttributeError:  # a step into text, a number or a list
                value = None
            if value is None:
                break
        if value is not None and value != "":
            found: JSON = value
            return found
    return None


def read_object(message: JSONObject, path_list: PathList) -> JSONObject | None:
    """The first path that holds an object (the `traits` list of SPEC §2)."""
    for path in path_list:
        value = get_path(message, path)
        if value is not None and isinstance(value, OBJECT_TYPES):
            return value
    return None
