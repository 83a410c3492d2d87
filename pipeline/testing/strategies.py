"""Hypothesis strategies for RudderStack events and User.com destination configs.

For your own tests (needs `hypothesis`, which a plain install lacks: `pip install hypothesis`):

- `events()`: any message the SPEC reads: identify, track, page, group and unsupported types,
  valid and invalid, with the field variants of SPEC §2 (traits or context.traits, address
  objects, timestamps as ISO text or epoch numbers, lookups by userKey, email or phone, ...);
- `valid_events()`: only events that pass every check needing no answer from User.com, so
  they deliver wherever their user exists;
- `configs()`: destination configs, valid and invalid; `valid_configs()` only valid ones.

Everything else here (`messages`, `items`, `any_items`, `timestamps`, identifiers, ...) is what
this project's own properties use. Keys are drawn from shared pools, so that generated mappings
hit generated traits often; every value is plain JSON, as `json.loads` would give it.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

from hypothesis import strategies as st

# --- pools -------------------------------------------------------------------------------------

EVENT_TYPES = ("identify", "track", "page", "group")
OTHER_TYPES = ("screen", "alias", "trackUser", "", "identity")
INTEGRATION_NAMES = ("user", "USER", "User", "User.com", "user.com", "USER.com")

# SPEC §5.2, restated here on purpose (not imported from the library).
IDENTIFY_SOURCE_KEYS = (
    "id userId email phone firstName firstname first_name lastName lastname last_name tags "
    "city region country gender status googleUrl linkedinUrl twitterUrl facebookUrl timezone "
    "avatar avatarURL avatar_URL"
).split()
# SPEC §8.2.
COMPANY_SOURCE_KEYS = (
    "id userId groupId groupname email address city region country description phone zip "
    "zipcode postalcode size tags"
).split()
# Names a user's traits often carry besides the standard ones; some collide with User.com
# field names on purpose (a custom trait may override a standard field, SPEC §5.2).
CUSTOM_KEYS = (
    "age plan tier score name company industry vip signup_source nickname custom_id "
    "phone_number first_name last_name user_key data score2"
).split()
EXTRA_SOURCE_KEYS = ("address", "zip", "zipcode", "postalCode", "description", "size", "groupId")
TRAIT_KEYS = tuple(dict.fromkeys((*IDENTIFY_SOURCE_KEYS, *CUSTOM_KEYS, *EXTRA_SOURCE_KEYS)))
# User.com attribute names a mapping may target (including standard fields, to override them).
TARGET_KEYS = (
    "plan_name customer_tier user_age score company_name email first_name custom_id city "
    "gender age data"
).split()
EVENT_NAMES = ("Order Completed", "Product Viewed", "signup", "Checkout", "0")
PROPERTY_KEYS = ("sku", "price", "currency", "position", "url", "path", "email", "phone", "total")

# Identifiers that tend to break URLs built by string concatenation (SPEC §9, §12.3).
TRICKY_IDENTIFIERS = (
    "..",
    ".",
    "../users",
    "a/b",
    "/",
    "//",
    "?q=1",
    "#frag",
    "100%",
    "%2F",
    "%",
    "%%",
    "%zz",
    "a+b@example.com",
    "+",
    " ",
    "a b",
    "a&b=c",
    "=",
    ";x",
    "\\",
    "\t",
    "ü",
    "日本語",
    "😀",
    "..%2F..",
    "user.com",
    "@evil.com",
)
_URL_CHARS = "/?#%+ .&=;@:~!$'()*,[]"

# --- arbitrary JSON ---------------------------------------------------------------------------

INTERESTING_KEYS = (
    "type message destination Config metadata userId anonymousId traits context properties "
    "event integrations externalId id email phone groupId timestamp originalTimestamp page url "
    "path name lookup address city gender status apiKey appSubdomain userAttributesMapping "
    "userEvents companyAttributesMapping from to rsEventName userEventName eventProperties "
    "results user_key custom_id"
).split()

json_keys: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(INTERESTING_KEYS), st.text(max_size=8)
)

json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(EVENT_TYPES),
)


def json_values(
    max_leaves: int = 15, scalars: st.SearchStrategy[Any] = json_scalars
) -> st.SearchStrategy[Any]:
    """Any JSON value (as `json.loads` gives it), nested up to a few levels."""
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(json_keys, inner, max_size=5)
        ),
        max_leaves=max_leaves,
    )


def json_objects(max_leaves: int = 15) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(json_keys, json_values(max_leaves), max_size=6)


# Strings with lone surrogates: valid JSON (`json.loads('"\\ud800"')`), not valid UTF-8.
surrogate_text: st.SearchStrategy[str] = st.builds(
    lambda before, lone, after: before + lone + after,
    st.text(max_size=4),
    st.integers(min_value=0xD800, max_value=0xDFFF).map(chr),
    st.text(max_size=4),
)

# --- identifiers -------------------------------------------------------------------------------

identifiers: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(TRICKY_IDENTIFIERS),
    st.text(
        st.one_of(st.sampled_from(_URL_CHARS), st.characters(codec="utf-8")),
        min_size=1,
        max_size=24,
    ),
    st.lists(st.sampled_from(TRICKY_IDENTIFIERS), min_size=2, max_size=4).map("".join),
)
"""Non-empty strings: every one is a *present* value (SPEC §2), even " "."""

emails: st.SearchStrategy[str] = st.one_of(
    st.emails(),
    st.builds(
        lambda local, tag: f"{local}+{tag}@example.com",
        st.text(string.ascii_letters, min_size=1, max_size=8),
        st.text(string.ascii_letters + "+/ %", min_size=1, max_size=6),
    ),
    identifiers,
)

user_ids: st.SearchStrategy[Any] = st.one_of(
    identifiers, st.integers(min_value=-(10**12), max_value=10**15), st.sampled_from(["u1", 0])
)
# "." and ".." are path segments no encoding keeps (RFC 3986 removes them); properties about
# payloads use these so that a URL failure (test_urls.py) does not hide theirs.
segment_safe_identifiers = identifiers.filter(lambda s: s not in (".", ".."))
segment_safe_user_ids = user_ids.filter(lambda v: v not in (".", ".."))

# --- the destination config ---------------------------------------------------------------------

dns_labels: st.SearchStrategy[str] = st.from_regex(
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True
)


@st.composite
def friendly_subdomains(draw: st.DrawFn, label: str | None = None) -> str:
    """A valid label in one of the friendly forms of SPEC §1 (spaces, case, scheme, suffix)."""
    name = label if label is not None else draw(dns_labels)
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    text = "".join(c.upper() if up else c for c, up in zip(name, flips, strict=True))
    if draw(st.booleans()):
        text += draw(st.sampled_from([".user.com", ".USER.COM", ".User.Com"]))
    if draw(st.booleans()):
        text += "/"
    if draw(st.booleans()):
        text = draw(st.sampled_from(["http://", "https://", "HTTPS://", "Http://"])) + text
    pad = st.text(" \t\n", max_size=3)
    return draw(pad) + text + draw(pad)


# Printable ASCII without spaces: the shape of a User.com public REST API key.
api_keys: st.SearchStrategy[str] = st.text(
    st.sampled_from(string.ascii_letters + string.digits + "-_.~!$&*"), min_size=16, max_size=64
)

mapping_sources: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(TRAIT_KEYS), st.sampled_from(["", "  "]), st.text(max_size=6)
)
mapping_targets: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(TARGET_KEYS), st.text(string.ascii_lowercase + "_", min_size=1, max_size=8)
)


def mapping_lists(
    sources: st.SearchStrategy[str] = mapping_sources,
) -> st.SearchStrategy[list[dict[str, str]]]:
    return st.lists(st.fixed_dictionaries({"from": sources, "to": mapping_targets}), max_size=6)


event_rules: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "rsEventName": st.sampled_from(EVENT_NAMES),
        "userEventName": st.one_of(st.sampled_from(["purchase", "view", ""]), st.text(max_size=8)),
        "eventProperties": mapping_lists(st.sampled_from(PROPERTY_KEYS)),
    }
)


@st.composite
def valid_configs(
    draw: st.DrawFn,
    api_key: st.SearchStrategy[str] = api_keys,
    user_mappings: st.SearchStrategy[list[dict[str, str]]] | None = None,
) -> dict[str, Any]:
    """A valid destination.Config: friendly subdomain, random mapping lists (or none)."""
    config: dict[str, Any] = {
        "apiKey": draw(api_key),
        "appSubdomain": draw(friendly_subdomains()),
    }
    lists = {
        "userAttributesMapping": user_mappings if user_mappings is not None else mapping_lists(),
        "userEvents": st.lists(event_rules, max_size=3),
        "companyAttributesMapping": mapping_lists(),
    }
    for key, strategy in lists.items():
        choice = draw(st.sampled_from(["list", "list", "missing", "null"]))
        if choice == "list":
            config[key] = draw(strategy)
        elif choice == "null":
            config[key] = None
    return config


# --- events -------------------------------------------------------------------------------------

_GENDERS = ("m", "M", "male", "Female", "f", "u", "UNKNOWN", "x", "other", " f ")
_STATUSES = ("v", "visitor", "U", "user", "Visitor", "admin")

trait_values: st.SearchStrategy[Any] = st.one_of(
    json_scalars,
    st.sampled_from(["", 0, False, [], {}]),
    identifiers,
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.sampled_from(["city", "zip", "street", "state"]), json_scalars, max_size=3),
)


def _value_for(key: str) -> st.SearchStrategy[Any]:
    if key == "gender":
        return st.one_of(st.sampled_from(_GENDERS), trait_values)
    if key == "status":
        return st.one_of(st.sampled_from(_STATUSES), trait_values)
    if key == "email":
        return st.one_of(emails, trait_values)
    if key == "address":
        return st.one_of(
            st.fixed_dictionaries(
                {"street": st.text(max_size=8)},
                optional={
                    "city": trait_values,
                    "zip": st.one_of(st.text(max_size=5), st.integers(0, 99999)),
                    "country": st.text(max_size=4),
                    "postalCode": st.text(max_size=5),
                },
            ),
            trait_values,
        )
    return trait_values


@st.composite
def trait_objects(draw: st.DrawFn, max_size: int = 8) -> dict[str, Any]:
    keys = draw(
        st.lists(
            st.one_of(st.sampled_from(TRAIT_KEYS), st.text(max_size=6)),
            max_size=max_size,
            unique=True,
        )
    )
    return {key: draw(_value_for(key)) for key in keys}


lookup_choices: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["email", "Email", "EMAIL", "phone", "PHONE", "userId", "", "fax", None]),
    st.integers(0, 3),
)


@st.composite
def integrations_objects(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from((*INTEGRATION_NAMES, "All", "Intercom")), unique=True))
    result: dict[str, Any] = {}
    for name in names:
        result[name] = draw(
            st.one_of(
                st.booleans(),
                st.just({}),
                st.fixed_dictionaries({"lookup": lookup_choices}),
            )
        )
    return result


external_ids: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["userKey", "userkey", "email", "USER-userId"]),
            "id": st.one_of(identifiers, st.integers(0, 10**9), st.just("")),
        }
    ),
    max_size=3,
)


def _timestamp_values() -> st.SearchStrategy[Any]:
    # Calendar-edge and unruly timestamps have their own properties (test_timestamps.py,
    # test_totality.py); realistic events keep to realistic ones.
    return st.one_of(timestamps(edges=False).map(lambda pair: pair[0]), json_scalars)


@st.composite
def messages(
    draw: st.DrawFn,
    types: tuple[str, ...] = EVENT_TYPES,
    with_lookup_options: bool = True,
    with_user_id: bool | None = None,
    user_id: st.SearchStrategy[Any] = user_ids,
) -> dict[str, Any]:
    """A realistic RudderStack message of one of `types`, with random optional parts.

    with_lookup_options=False leaves out externalId and integrations (the lookup is then the
    userId or the email); with_user_id=True always sets a top-level userId.
    """
    kind = draw(st.sampled_from(types))
    message: dict[str, Any] = {
        "type": draw(st.sampled_from([kind, kind.upper(), kind.capitalize()])),
        "messageId": draw(st.uuids()).hex,
    }

    def maybe(key: str, strategy: st.SearchStrategy[Any], target: dict[str, Any]) -> None:
        if draw(st.booleans()):
            target[key] = draw(strategy)

    if with_user_id or (with_user_id is None and draw(st.booleans())):
        message["userId"] = draw(user_id)
    maybe("anonymousId", identifiers, message)
    maybe("traits", trait_objects(), message)
    maybe("timestamp", _timestamp_values(), message)
    maybe("originalTimestamp", _timestamp_values(), message)
    context: dict[str, Any] = {}
    maybe("traits", trait_objects(), context)
    if kind == "page" or draw(st.integers(0, 4)) == 0:
        maybe(
            "page",
            st.fixed_dictionaries(
                {}, optional={"url": st.one_of(st.just(""), st.text()), "path": st.text()}
            ),
            context,
        )
    if with_lookup_options:
        maybe("externalId", external_ids, context)
        maybe("integrations", integrations_objects(), message)
    maybe("library", st.just({"name": "analytics.js", "version": "2.0"}), context)
    if bool(context) or draw(st.booleans()):
        message["context"] = context
    if kind in ("track", "page") or draw(st.integers(0, 4)) == 0:
        maybe(
            "properties",
            st.dictionaries(st.sampled_from(PROPERTY_KEYS), trait_values, max_size=5),
            message,
        )
    if kind == "track":
        maybe("event", st.one_of(st.sampled_from(EVENT_NAMES), st.text(max_size=8)), message)
    if kind == "group":
        maybe("groupId", st.one_of(identifiers, st.integers(0, 10**6)), message)
        if draw(st.booleans()):
            message.setdefault("traits", {})["name"] = draw(
                st.one_of(st.text(min_size=1, max_size=10), trait_values)
            )
    return message


@st.composite
def items(
    draw: st.DrawFn,
    message: st.SearchStrategy[Any] | None = None,
    config: st.SearchStrategy[Any] | None = None,
) -> dict[str, Any]:
    """A processor input item `{message, destination: {Config}, metadata}`."""
    item: dict[str, Any] = {
        "message": draw(message if message is not None else messages()),
        "destination": {
            "ID": "dest-1",
            "Config": draw(config if config is not None else valid_configs()),
        },
    }
    if draw(st.booleans()):
        item["metadata"] = {"jobId": draw(st.integers(0, 10**6)), "sourceId": "src"}
    return item


def messy_messages() -> st.SearchStrategy[Any]:
    """Messages with the right keys but wrong shapes: the usual crash material."""
    return st.one_of(
        json_values(),
        st.dictionaries(
            st.sampled_from(INTERESTING_KEYS),
            st.one_of(json_values(max_leaves=6), st.sampled_from((*EVENT_TYPES, *OTHER_TYPES))),
            max_size=8,
        ),
        messages().flatmap(
            lambda ev: st.dictionaries(
                st.sampled_from(INTERESTING_KEYS), json_values(max_leaves=5), max_size=3
            ).map(lambda noise: {**ev, **noise})
        ),
    )


def any_items() -> st.SearchStrategy[Any]:
    """Arbitrary JSON as the item, as the message, as the config, or all realistic."""
    return st.one_of(
        json_values(),
        items(message=messy_messages()),
        items(config=st.one_of(json_values(), valid_configs().map(_spoil_config))),
        items(),
        items(message=messages(with_lookup_options=False, with_user_id=True)),
    )


def _spoil_config(config: dict[str, Any]) -> Any:
    return {**config, "userAttributesMapping": [None, 3, {"from": 1, "to": None}, "x"]}


# --- timestamps ---------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLIS = 10**11


def _seconds_of(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(seconds=1)


def _epoch(number: Fraction) -> int:
    return (number / 1000 if number >= _MILLIS else number).__floor__()


@st.composite
def iso_timestamps(draw: st.DrawFn, edges: bool = True) -> tuple[str, int]:
    """An ISO-8601 string and its whole seconds since the epoch, computed without parsing.

    edges=True also gives the ends of the calendar (year 1, year 9999) with offsets that take
    the instant across them.
    """
    realistic = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))
    calendar_ends = st.sampled_from([datetime.min, datetime.max])
    naive = draw(st.one_of(st.datetimes(), calendar_ends) if edges else realistic)
    offset = draw(st.one_of(st.none(), st.integers(-(23 * 60 + 59), 23 * 60 + 59)))
    spec = draw(st.sampled_from(["seconds", "milliseconds", "microseconds", "auto"]))
    sep = draw(st.sampled_from(["T", " "]))
    if offset is None:  # no offset: UTC (SPEC §6)
        text = naive.isoformat(sep=sep, timespec=spec)
        return text, _seconds_of(naive.replace(tzinfo=UTC))
    moment = naive.replace(tzinfo=timezone(timedelta(minutes=offset)))
    text = moment.isoformat(sep=sep, timespec=spec)
    if offset == 0 and draw(st.booleans()):
        text = text.removesuffix("+00:00") + "Z"
    return text, _seconds_of(moment)


def timestamps(edges: bool = True) -> st.SearchStrategy[tuple[Any, int | None]]:
    """A timestamp value and the whole seconds SPEC §6 says it stands for (None: left out)."""
    whole = st.integers(min_value=-(10**14), max_value=10**14)
    return st.one_of(
        iso_timestamps(edges=edges),
        whole.map(lambda n: (n, _epoch(Fraction(n)))),
        st.floats(min_value=-1e14, max_value=1e14).map(lambda x: (x, _epoch(Fraction(x)))),
        # Digit strings with a fraction, within float precision (up to the year 2286 in ms).
        st.builds(
            lambda n, frac: (f"{n}{frac}", _epoch(Fraction(f"{n}{frac}"))),
            st.integers(min_value=0, max_value=10**13),
            st.sampled_from(["", ".5", ".25", ".801", ".0", ".999"]),
        ),
        # Long digit strings are still numbers: a far-future date (SPEC §6).
        st.text("0123456789", min_size=15, max_size=400).map(
            lambda digits: (digits, _epoch(Fraction(digits)))
        ),
        st.sampled_from(["soon", "yesterday", "2021-13-45", "  ", "1e9", "-", "12:00"]).map(
            lambda text: (text, None)
        ),
        st.sampled_from([True, False, [], {}]).map(lambda value: (value, None)),
    )


unruly_numbers: st.SearchStrategy[str] = st.one_of(
    st.builds(
        "{}.{}".format,
        st.text("0123456789", min_size=16, max_size=400),
        st.text("0123456789", min_size=1, max_size=30),
    ),
    st.integers(min_value=4290, max_value=4400).map(lambda n: "7" * n),
)
"""Digit strings past float range or Python's int-parsing limit: still JSON strings."""


# --- colliding names (SPEC §5.2, §6, §8.2) -----------------------------------------------------

# The User.com fields the standard tables fill (SPEC §5.1, §8.1): a mapping may target them, and
# a custom trait of the same name (when it is not a standard source key) overrides them.
IDENTIFY_FIELDS = (
    "custom_id email phone_number first_name last_name tags city region country gender status "
    "google_url linkedin_url twitter_url facebook_url gravatar_url timezone"
).split()
COMPANY_FIELDS = (
    "user_custom_id custom_id name email address city region country description "
    "phone_numbers postal_code size tags"
).split()
# Custom traits that mappings read, and custom attribute names they write.
COLLIDING_SOURCES = ("plan", "tier", "vip", "nickname", "sex", "score")
COLLIDING_TARGETS = ("plan_name", "age", "score", "tier", "firstName", "phone")


@st.composite
def colliding_traits(
    draw: st.DrawFn, fields: list[str], source_keys: list[str]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Traits and a mapping list whose names collide on purpose: mapped `to`s equal to standard
    fields, to each other, and to the names of traits that are copied as they are; several
    entries for one `from`; `from`s that are absent or not present ("", null)."""
    traits: dict[str, Any] = {
        key: draw(_value_for(key))
        for key in draw(st.lists(st.sampled_from(source_keys), max_size=6, unique=True))
    }
    for name in draw(st.lists(st.sampled_from(COLLIDING_SOURCES), min_size=1, unique=True)):
        traits[name] = draw(trait_values)
    targets = st.sampled_from((*fields, *COLLIDING_TARGETS, *COLLIDING_SOURCES))
    # The first entry maps a present custom trait onto a standard field.
    first = draw(st.sampled_from(COLLIDING_SOURCES))
    traits[first] = draw(st.one_of(st.text(min_size=1, max_size=6), st.integers(), st.just(0)))
    mappings = [{"from": first, "to": draw(st.sampled_from(fields))}]
    mappings += draw(
        st.lists(
            st.fixed_dictionaries({"from": st.sampled_from((*traits, "not_sent")), "to": targets}),
            max_size=7,
        )
    )
    mappings = draw(st.permutations(mappings))
    # Traits named like some entries' `to` (they are copied as they are, unless a standard
    # source key, and then override what was mapped there) ...
    for entry in draw(st.lists(st.sampled_from(mappings), max_size=3)):
        traits[entry["to"]] = draw(trait_values)
    # ... and like standard fields that are not source keys (custom_id, phone_number, …).
    others = [name for name in fields if name not in source_keys]
    for name in draw(st.lists(st.sampled_from(others), max_size=2, unique=True)):
        traits[name] = draw(trait_values)
    return traits, mappings


def _split_traits(draw: st.DrawFn, traits: dict[str, Any], message: dict[str, Any]) -> None:
    """Each trait in `traits`, `context.traits`, or both (then with another value)."""
    top: dict[str, Any] = {}
    context: dict[str, Any] = {}
    for key, value in traits.items():
        where = draw(st.sampled_from(["traits", "context", "both"]))
        if where in ("traits", "both"):
            top[key] = value if where == "traits" else draw(trait_values)
        if where in ("context", "both"):
            context[key] = value
    empty_traits: bool = draw(st.booleans())
    if top or empty_traits:
        message["traits"] = top
    if context:
        message["context"] = {"traits": context}


def _config_with(draw: st.DrawFn, **lists: Any) -> dict[str, Any]:
    config = draw(valid_configs())
    config.update(lists)
    return config


@st.composite
def colliding_identify_items(draw: st.DrawFn) -> dict[str, Any]:
    """An identify by userId whose traits and userAttributesMapping collide (SPEC §5.2)."""
    traits, mappings = draw(colliding_traits(IDENTIFY_FIELDS, IDENTIFY_SOURCE_KEYS))
    message: dict[str, Any] = {"type": "identify", "userId": draw(segment_safe_user_ids)}
    _split_traits(draw, traits, message)
    config = _config_with(draw, userAttributesMapping=mappings)
    return draw(items(message=st.just(message), config=st.just(config)))


@st.composite
def colliding_group_items(draw: st.DrawFn) -> dict[str, Any]:
    """A group whose traits and companyAttributesMapping collide (SPEC §8.2)."""
    traits, mappings = draw(colliding_traits(COMPANY_FIELDS, COMPANY_SOURCE_KEYS))
    traits["name"] = draw(st.text(min_size=1, max_size=10))
    message: dict[str, Any] = {
        "type": "group",
        "userId": draw(segment_safe_user_ids),
        "groupId": draw(segment_safe_identifiers),
    }
    if draw(st.booleans()):
        message["traits"] = traits
    else:  # the company name comes from there too (SPEC §12.17)
        message["context"] = {"traits": traits}
    config = _config_with(draw, companyAttributesMapping=mappings)
    return draw(items(message=st.just(message), config=st.just(config)))


def _near_misses(name: str) -> list[str]:
    """Event names that are not `name` (SPEC §1: matched exactly, case-sensitive)."""
    return [n for n in (name.lower(), name.upper(), f" {name}", f"{name} ") if n != name]


@st.composite
def track_items_with_rules(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A track, and userEvents with 0, 1, 2 or 3 rules for its event (plus rules for other
    names, near misses included) whose property renames collide: a `to` that is another
    property's name, two entries for one `from`, two `from`s to one `to`; and how many match."""
    event = draw(st.sampled_from(EVENT_NAMES))
    matching = draw(st.sampled_from([0, 1, 1, 2, 3]))
    message: dict[str, Any] = {
        "type": "track",
        "userId": draw(segment_safe_user_ids),
        "event": event,
        "timestamp": "2024-05-01T10:00:00Z",
    }
    names: tuple[str, ...] = (*PROPERTY_KEYS, "value")
    if draw(st.integers(0, 4)) > 0:
        properties = draw(st.dictionaries(st.sampled_from(names), trait_values, max_size=6))
        message["properties"] = properties
        names = (*properties, *properties, "value", "not_sent")  # mostly the event's own
    renames = st.lists(
        st.fixed_dictionaries({"from": st.sampled_from(names), "to": st.sampled_from(names)}),
        max_size=6,
    )

    def rules(event_names: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {
                "rsEventName": event_names,
                "userEventName": st.text(
                    string.ascii_letters + "_ ", min_size=1, max_size=8
                ).filter(str.strip),
                "eventProperties": renames,
            }
        )

    others = [n for n in (*EVENT_NAMES, *_near_misses(event)) if n != event]
    chosen = draw(st.lists(rules(st.just(event)), min_size=matching, max_size=matching))
    chosen += draw(st.lists(rules(st.sampled_from(others)), max_size=3))
    config = _config_with(draw, userEvents=draw(st.permutations(chosen)))
    return draw(items(message=st.just(message), config=st.just(config))), matching


# --- the public strategies ---------------------------------------------------------------------

ALL_TYPES = (*EVENT_TYPES, *OTHER_TYPES)


def events() -> st.SearchStrategy[dict[str, Any]]:
    """Any message the SPEC reads: the four supported types and others, valid and invalid."""
    return st.one_of(
        messages(types=ALL_TYPES),
        valid_events(),
        messages(types=EVENT_TYPES, with_lookup_options=False, with_user_id=True),
    )


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """An identify, track, page or group with every field its checks need (SPEC §3, §5-§8)."""
    message = draw(messages(types=EVENT_TYPES, with_lookup_options=False, with_user_id=True))
    message["userId"] = draw(st.one_of(segment_safe_identifiers, st.integers(0, 10**9)))
    kind = str(message["type"]).lower()
    if kind == "track":
        message["event"] = draw(st.sampled_from(EVENT_NAMES))
    elif kind == "page":
        context = message.setdefault("context", {})
        context["page"] = {
            "url": draw(st.sampled_from(["https://shop.example.com/p/1", "https://x.io/"])),
            "path": draw(st.sampled_from(["/p/1", "/"])),
        }
        message["timestamp"] = draw(iso_timestamps(edges=False))[0]
    elif kind == "group":
        message["groupId"] = draw(st.one_of(segment_safe_identifiers, st.integers(0, 10**6)))
        traits = message.get("traits")
        message["traits"] = {**(traits if isinstance(traits, dict) else {}), "name": "Acme"}
    return message


def configs() -> st.SearchStrategy[Any]:
    """Destination configs: mostly valid, sometimes not (a key or subdomain missing or
    wrong, a mapping list that is not a list, a config that is not an object)."""
    return st.one_of(valid_configs(), valid_configs().flatmap(_invalid_config), json_values())


def _invalid_config(config: dict[str, Any]) -> st.SearchStrategy[Any]:
    spoiled: list[Any] = [
        {k: v for k, v in config.items() if k != "apiKey"},
        {k: v for k, v in config.items() if k != "appSubdomain"},
        {**config, "apiKey": 12345},
        {**config, "appSubdomain": "evil.com/x"},
        {**config, "userAttributesMapping": "plan"},
        {**config, "userEvents": {"rsEventName": "x"}},
    ]
    return st.sampled_from(spoiled)
