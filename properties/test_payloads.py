"""What the bodies hold: SPEC §5 (identify), §6 (track), §8 (group), §9 (no top-level null)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

import pipeline
from pipeline.testing.strategies import (
    COMPANY_SOURCE_KEYS,
    IDENTIFY_SOURCE_KEYS,
    TRAIT_KEYS,
    colliding_group_items,
    colliding_identify_items,
    items,
    mapping_lists,
    messages,
    segment_safe_identifiers,
    segment_safe_user_ids,
    track_items_with_rules,
    trait_objects,
    valid_configs,
)
from properties import fakes, oracle

# Mappings whose `from` is usually a trait the event carries.
_HITTING_MAPPINGS = mapping_lists(st.sampled_from(TRAIT_KEYS))
_CONFIGS = valid_configs(user_mappings=_HITTING_MAPPINGS)


def _run(item: dict[str, Any], recorder: fakes.Recorder) -> dict[str, Any]:
    result = pipeline.process(item, transport=recorder.transport)
    assert result["statusCode"] == 200, result
    body: dict[str, Any] = result["output"]["body"]["JSON"]
    return body


identify_items = items(
    message=messages(
        types=("identify",),
        with_lookup_options=False,
        with_user_id=True,
        user_id=segment_safe_user_ids,
    ),
    config=_CONFIGS,
)


@st.composite
def group_items(draw: st.DrawFn) -> dict[str, Any]:
    message = draw(
        messages(
            types=("group",),
            with_lookup_options=False,
            with_user_id=True,
            user_id=segment_safe_user_ids,
        )
    )
    message["groupId"] = draw(segment_safe_identifiers)
    where = draw(st.sampled_from(["traits", "context"]))
    traits = draw(trait_objects())
    traits["name"] = draw(st.text(min_size=1, max_size=10))
    if where == "traits":
        message["traits"] = traits
    else:
        message.pop("traits", None)
        message.setdefault("context", {})["traits"] = traits
    return draw(items(message=st.just(message), config=_CONFIGS))


@given(
    st.one_of(
        items(message=messages(with_lookup_options=False, with_user_id=True)),
        group_items(),
        items(),
    ),
    st.booleans(),
)
def test_no_body_has_a_null_at_its_top_level(item: dict[str, Any], found: bool) -> None:
    """SPEC §9: top-level keys whose value is null are dropped from every body."""
    recorder = fakes.user_com(user_found=found, company_found=found)
    result = pipeline.process(item, transport=recorder.transport)
    bodies = recorder.bodies()
    if result["statusCode"] == 200:
        bodies.append(result["output"]["body"]["JSON"])
    for body in bodies:
        assert isinstance(body, dict)
        assert None not in body.values(), body


@given(identify_items, st.booleans())
def test_custom_maps_land_under_their_to(item: dict[str, Any], found: bool) -> None:
    """SPEC §5.2: a present `from` trait lands under `to` (0 and false too, §12.10) unless a
    remaining trait of the same name, or another mapping to the same `to`, overrides it."""
    body = _run(item, fakes.user_com(user_found=found))
    message, config = item["message"], item["destination"]["Config"]
    traits = oracle.merged_traits(message)
    renames = oracle.effective_renames(config.get("userAttributesMapping"))
    mapped = [(source, target) for source, target in renames if oracle.present(traits.get(source))]
    used = {source for source, _ in mapped}
    remaining = {k for k in traits if k not in used and k not in IDENTIFY_SOURCE_KEYS}
    targets = [target for _, target in mapped]
    for source, target in mapped:
        if target in remaining or targets.count(target) > 1:
            continue
        assert target in body, (source, target)
        assert body[target] == traits[source], (source, target)


@given(identify_items, st.booleans())
def test_standard_source_keys_never_leak_as_custom_attributes(
    item: dict[str, Any], found: bool
) -> None:
    """SPEC §5.2: the standard source keys are read by the standard table only: a trait named
    `phone` or `firstName` is never copied, and `email`, `gender`, `city`… hold what §5.1 reads."""
    body = _run(item, fakes.user_com(user_found=found))
    message, config = item["message"], item["destination"]["Config"]
    traits = oracle.merged_traits(message)
    renames = oracle.effective_renames(config.get("userAttributesMapping"))
    targets = {target for source, target in renames if oracle.present(traits.get(source))}
    for key in IDENTIFY_SOURCE_KEYS:
        if key in targets:
            continue
        if key not in oracle.IDENTIFY_SHARED_FIELDS:
            assert key not in body, key
            continue
        expected = oracle.standard_identify_field(message, key)
        if expected is oracle.MISSING:
            continue
        if expected is None:
            assert key not in body, key
        else:
            assert body.get(key) == expected, key


@given(identify_items, st.booleans())
def test_context_traits_win_over_traits_in_the_overlay(item: dict[str, Any], found: bool) -> None:
    """SPEC §5.2: the overlay reads `{**traits, **context.traits}`."""
    message, config = item["message"], item["destination"]["Config"]
    traits, context_traits = message.get("traits"), oracle.get(message, "context.traits")
    if not (isinstance(traits, dict) and isinstance(context_traits, dict)):
        context_traits = {"plan": "from-context", "age": 0}
        traits = {"plan": "from-traits", "age": 99, "vip": True}
        message["traits"] = traits
        message.setdefault("context", {})["traits"] = context_traits
    body = _run(item, fakes.user_com(user_found=found))
    renames = oracle.effective_renames(config.get("userAttributesMapping"))
    mentioned = {name for pair in renames for name in pair}
    for key in traits.keys() & context_traits.keys():
        if key in IDENTIFY_SOURCE_KEYS or key in mentioned:
            continue
        if context_traits[key] is None:
            assert key not in body, key
        else:
            assert body.get(key) == context_traits[key], key


@given(group_items(), st.booleans())
def test_company_payload_keeps_source_keys_out_and_joins_address(
    item: dict[str, Any], company_found: bool
) -> None:
    """SPEC §8: group source keys are not copied; `address` is never an object; maps land."""
    recorder = fakes.user_com(company_found=company_found)
    final = _run(item, recorder)
    writes = [r for r in recorder.requests if r.url.path.startswith("/api/public/companies/")]
    assert len(writes) == 1
    assert writes[0].method == ("PUT" if company_found else "POST")
    company = recorder.bodies()[-1]
    message, config = item["message"], item["destination"]["Config"]
    group_traits = oracle.read_object(message, ("traits", "context.traits"))
    renames = oracle.effective_renames(config.get("companyAttributesMapping"))
    mapped = [(s, t) for s, t in renames if oracle.present(group_traits.get(s))]
    used = {s for s, _ in mapped}
    targets = [t for _, t in mapped]
    outputs = {"email", "address", "city", "region", "country", "description", "size", "tags"}
    for key in set(COMPANY_SOURCE_KEYS) - outputs - set(targets):
        assert key not in company, key
    assert not isinstance(company.get("address"), dict)
    remaining = {k for k in group_traits if k not in used and k not in COMPANY_SOURCE_KEYS}
    if "custom_id" not in remaining and "custom_id" not in targets:  # else overridden (§5.2)
        assert company["custom_id"] == message["groupId"]
    for source, target in mapped:
        if target in remaining or targets.count(target) > 1 or target == "address":
            continue
        assert company.get(target) == group_traits[source], (source, target)
    assert final == {"user_id": fakes.USER["id"], "user_custom_id": fakes.USER["custom_id"]}


@st.composite
def track_items(draw: st.DrawFn) -> dict[str, Any]:
    message = draw(
        messages(
            types=("track",),
            with_lookup_options=False,
            with_user_id=True,
            user_id=segment_safe_user_ids,
        )
    )
    message["event"] = draw(st.sampled_from(["Order Completed", "Product Viewed", "signup"]))
    # Timestamps have their own properties (test_timestamps.py); keep this one about `data`.
    message.pop("originalTimestamp", None)
    message["timestamp"] = "2024-05-01T10:00:00.123Z"
    return draw(items(message=st.just(message)))


@given(track_items())
def test_track_data_follows_the_event_rules(item: dict[str, Any]) -> None:
    """SPEC §6: no rule (or several): name and data as sent; one rule: renamed, properties
    renamed then the remaining ones under their own names; no `data` without properties."""
    body = _run(item, fakes.user_com())
    message, config = item["message"], item["destination"]["Config"]
    rules = config.get("userEvents") or []
    matching = [rule for rule in rules if rule["rsEventName"] == message["event"]]
    properties = message.get("properties")
    assert body["user_id"] == fakes.USER["id"]
    if not isinstance(properties, dict):
        assert "data" not in body
    if len(matching) != 1:
        assert body["name"] == message["event"]
        if isinstance(properties, dict):
            assert body["data"] == properties
        return
    rule = matching[0]
    if rule["userEventName"].strip():
        assert body["name"] == rule["userEventName"]
    if not isinstance(properties, dict):
        return
    renames = oracle.effective_renames(rule["eventProperties"])
    mapped = [(s, t) for s, t in renames if oracle.present(properties.get(s))]
    used = {s for s, _ in mapped}
    remaining = {k: v for k, v in properties.items() if k not in used}
    targets = [t for _, t in mapped]
    for source, target in mapped:
        if target not in remaining and targets.count(target) == 1:
            assert body["data"][target] == properties[source], (source, target)
    for key, value in remaining.items():
        assert body["data"][key] == value, key


# --- colliding names: the precedence rules themselves ------------------------------------------


def _assert_overlay_wins(body: dict[str, Any], layer: dict[str, Any]) -> None:
    """Every name the overlay wrote holds what it wrote there, whatever the standard table
    put under that name; a null written there leaves the name out (SPEC §5.2 step 3)."""
    for name, value in layer.items():
        if value is None:
            assert name not in body, (name, body)
        else:
            assert name in body, (name, body)
            assert body[name] == value, name


_COLLIDING_IDENTIFY = {
    "message": {
        "type": "identify",
        "userId": "u-1",
        "traits": {
            "email": "std@x.io",
            "firstName": "Ada",
            "gender": "female",
            "plan": "pro",
            "nickname": "Ace",
            "sex": "f",
            "tier": "gold",
            "vip": True,
            "phone_number": "+48 1",
            "plan_name": "trait wins",
        },
        "context": {"traits": {"custom_id": None}},
    },
    "destination": {
        "Config": {
            "apiKey": "k" * 64,
            "appSubdomain": "acme",
            "userAttributesMapping": [
                {"from": "plan", "to": "email"},  # mapped over standard fields
                {"from": "nickname", "to": "first_name"},
                {"from": "sex", "to": "gender"},  # the raw value, not its code
                {"from": "tier", "to": "age"},  # superseded: `tier` is listed again below
                {"from": "vip", "to": "score"},
                {"from": "tier", "to": "score"},  # the later entry to `score` wins
                {"from": "firstName", "to": "plan_name"},  # the trait `plan_name` beats it
                {"from": "not_sent", "to": "phone_number"},  # absent: the trait stays
            ],
        }
    },
}


@example(_COLLIDING_IDENTIFY, True)
@given(colliding_identify_items(), st.booleans())
def test_identify_overlay_precedence_on_colliding_names(item: dict[str, Any], found: bool) -> None:
    """SPEC §5.2: mapped traits override standard fields of the same name (`email`,
    `first_name`, `gender`…); remaining traits override both (`custom_id`, `phone_number`, a
    trait named like a mapping's `to`); among mappings to one `to`, the later entry wins."""
    body = _run(item, fakes.user_com(user_found=found))
    message, config = item["message"], item["destination"]["Config"]
    layer = oracle.overlay(
        oracle.merged_traits(message), config["userAttributesMapping"], IDENTIFY_SOURCE_KEYS
    )
    _assert_overlay_wins(body, layer)
    if item is _COLLIDING_IDENTIFY:  # the example, spelled out
        assert body == {
            "email": "pro",
            "first_name": "Ace",
            "gender": "f",
            "score": "gold",
            "plan_name": "trait wins",
            "phone_number": "+48 1",
            # `custom_id` (from userId) overridden by a null trait, then dropped (step 3).
        }


@given(colliding_group_items(), st.booleans())
def test_company_overlay_precedence_on_colliding_names(
    item: dict[str, Any], company_found: bool
) -> None:
    """SPEC §8.2: the same layering for the company payload (`name`, `custom_id`, `email`…)."""
    recorder = fakes.user_com(company_found=company_found)
    _run(item, recorder)
    [write] = [r for r in recorder.requests if r.url.path.startswith("/api/public/companies/")]
    company = json.loads(write.content)
    message, config = item["message"], item["destination"]["Config"]
    group_traits = oracle.read_object(message, ("traits", "context.traits"))
    layer = oracle.overlay(group_traits, config["companyAttributesMapping"], COMPANY_SOURCE_KEYS)
    if isinstance(layer.get("address"), dict):  # joined into one string: its own property
        del layer["address"]
    _assert_overlay_wins(company, layer)


@given(track_items_with_rules())
def test_track_renames_only_with_exactly_one_matching_rule(
    case: tuple[dict[str, Any], int],
) -> None:
    """SPEC §6: with exactly one userEvents rule for the event, `name` is its userEventName
    and `data` its renames laid over the properties (remaining properties override renamed
    ones of the same name); with none, or two or more, name and data are the event's own.
    Rules for other names, near misses (`signup ` / `SIGNUP`) included, never count."""
    item, matching = case
    body = _run(item, fakes.user_com())
    message, config = item["message"], item["destination"]["Config"]
    rules = [r for r in config["userEvents"] if r["rsEventName"] == message["event"]]
    assert len(rules) == matching
    properties = message.get("properties")
    if matching == 1:
        assert body["name"] == rules[0]["userEventName"]
        data = oracle.overlay(properties or {}, rules[0]["eventProperties"], ())
    else:
        assert body["name"] == message["event"]
        data = properties
    if properties is None:
        assert "data" not in body
    else:
        assert body["data"] == data
