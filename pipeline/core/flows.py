"""The identify, track, page and group flows (SPEC §5-§8): checks first, then Calls and a Final.

Order of checks (SPEC §3): the event's own required fields, the lookup choice, the payload;
only then does a flow hold a request.

>>> from pipeline.core.config import parse_config
>>> from pipeline.core.normalize import normalize
>>> cfg = parse_config({"apiKey": "k", "appSubdomain": "acme"}).unwrap()
>>> step = event_flow(cfg, normalize({"type": "identify", "userId": "u1"}).unwrap()).unwrap()
>>> step.request
<Request GET /users-by-id/u1/>
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType

from returns.result import Failure, Result, Success

from pipeline.core import errors, paths
from pipeline.core.answers import Answer, classify_lookup, classify_write
from pipeline.core.calls import Method, Request, clean_body
from pipeline.core.config import Config, EventRule
from pipeline.core.errors import PipelineError
from pipeline.core.lookup import Lookup, resolve_lookup
from pipeline.core.mapping import (
    COMPANY,
    COMPANY_SOURCE_KEYS,
    IDENTIFY,
    IDENTIFY_SOURCE_KEYS,
    TRACK_TIMESTAMP,
    Payload,
    apply_table,
)
from pipeline.core.normalize import Event, EventType
from pipeline.core.overlay import merged_traits, overlay, overlay_fields
from pipeline.core.steps import Call, Expect, Final, Step
from pipeline.core.types import JSON, JSONObject, as_text, is_present

TRACK_NOT_FOUND = (
    "No user found with given lookup field, Track event cannot be completed if there is no "
    "valid user"
)
PAGE_NOT_FOUND = (
    "No user found with given lookup field. Page event cannot be completed if there is no "
    "valid user"
)
GROUP_USER_NOT_FOUND = "No user found with given userId"

StepResult = Result[Step, PipelineError]


def _require(
    message: JSONObject, source: paths.PathList, error: str
) -> Result[JSON, PipelineError]:
    value = paths.read(message, source)
    return Success(value) if value is not None else Failure(errors.instrumentation(error))


def _final(method: Method, path: tuple[str, ...], payload: Payload) -> Final:
    return Final(Request(method, path, body=clean_body(payload.fields)), payload.warnings)


def _with_id(thing: JSONObject, what: str) -> Result[str, PipelineError]:
    ident = thing.get("id")
    if not is_present(ident):
        return Failure(errors.aborted(f"User.com answered a {what} without an id"))
    return Success(as_text(ident))


def _lookup_call(lookup: Lookup, found: Callable[[JSONObject | None], StepResult]) -> Call:
    def then(answer: Answer) -> StepResult:
        return lookup.classify(answer).bind(found)

    expect: Expect = "user_list" if lookup.by == "phone" else "user"
    return Call(lookup.request, f"find the user by {lookup.by}", expect, then)


# --- identify (SPEC §5) -------------------------------------------------------------------


def identify_payload(cfg: Config, message: JSONObject) -> Result[Payload, PipelineError]:
    return apply_table(IDENTIFY, message).map(
        lambda p: overlay(p, merged_traits(message), cfg.user_attributes, IDENTIFY_SOURCE_KEYS)
    )


def _identify_write(payload: Payload, user: JSONObject | None) -> StepResult:
    if user is None:
        return Success(_final("POST", ("users",), payload))
    return _with_id(user, "user").map(lambda uid: _final("PUT", ("users", uid), payload))


def identify(cfg: Config, message: JSONObject) -> StepResult:
    return resolve_lookup(message).bind(
        lambda lookup: identify_payload(cfg, message).map(
            lambda payload: _lookup_call(lookup, partial(_identify_write, payload))
        )
    )


# --- track (SPEC §6) ----------------------------------------------------------------------


def _event_rule(cfg: Config, name: JSON) -> EventRule | None:
    matches = [rule for rule in cfg.user_events if rule.rs_event_name == name]
    return matches[0] if len(matches) == 1 else None


def track_payload(cfg: Config, message: JSONObject) -> Result[Payload, PipelineError]:
    name = message.get("event")
    rule = _event_rule(cfg, name)
    properties = message.get("properties")
    fields: dict[str, JSON] = {"name": rule.user_event_name if rule else name}
    if isinstance(properties, Mapping):
        fields["data"] = (
            overlay_fields(properties, rule.properties, frozenset()) if rule else properties
        )
    return (
        _require(message, paths.USER_ID, errors.MISSING_USER_ID)
        .bind(lambda _: apply_table((TRACK_TIMESTAMP,), message))
        .map(lambda stamp: stamp.merged(fields))
    )


def _track_write(payload: Payload, user: JSONObject | None) -> StepResult:
    if user is None:
        return Failure(errors.not_found(TRACK_NOT_FOUND))
    return _with_id(user, "user").map(
        lambda _: _final("POST", ("events",), payload.merged({"user_id": user.get("id")}))
    )


def track(cfg: Config, message: JSONObject) -> StepResult:
    return (
        _require(message, (("event",),), "Parameter event is required")
        .bind(lambda _: resolve_lookup(message))
        .bind(
            lambda lookup: track_payload(cfg, message).map(
                lambda payload: _lookup_call(lookup, partial(_track_write, payload))
            )
        )
    )


# --- page (SPEC §7) -----------------------------------------------------------------------


def page_payload(message: JSONObject) -> Result[Payload, PipelineError]:
    url = paths.read(message, paths.PAGE_URL)
    path = paths.read(message, paths.PAGE_PATH)
    stamp = paths.read(message, paths.TIMESTAMP)
    if url is None:
        return Failure(errors.instrumentation("Parameter url is required"))
    if path is None:
        return Failure(errors.instrumentation("Parameter path is required"))
    if stamp is None:
        return Failure(errors.instrumentation("Parameter timestamp is required"))
    fields = {"page_domain": url, "page_path": path, "timestamp": stamp}
    return Success(Payload(MappingProxyType(fields)))


def _page_write(payload: Payload, user: JSONObject | None) -> StepResult:
    if user is None:
        return Failure(errors.not_found(PAGE_NOT_FOUND))
    return Success(
        _final("POST", ("site-views",), payload.merged({"client_user": user.get("user_key")}))
    )


def page(cfg: Config, message: JSONObject) -> StepResult:
    return page_payload(message).bind(
        lambda payload: resolve_lookup(message).bind(
            lambda lookup: _require(message, paths.USER_ID, errors.MISSING_USER_ID).map(
                lambda _: _lookup_call(lookup, partial(_page_write, payload))
            )
        )
    )


# --- group (SPEC §8) ----------------------------------------------------------------------


def joined_address(value: JSON) -> JSON:
    """An address object becomes one string: its non-empty text/number values, ", "-joined."""
    if not isinstance(value, Mapping):
        return value
    parts = [
        as_text(v)
        for v in value.values()
        if (isinstance(v, str) and v.strip())
        or (isinstance(v, int | float) and not isinstance(v, bool))
    ]
    return ", ".join(parts) or None


def group_payload(cfg: Config, message: JSONObject) -> Result[Payload, PipelineError]:
    traits = paths.read_object(message, paths.TRAITS) or MappingProxyType({})
    name = traits.get("name")
    if not is_present(name):
        return Failure(errors.instrumentation("Parameter name is required"))
    if paths.read(message, paths.GROUP_ID) is None:
        return Failure(errors.instrumentation("Parameter groupId is required"))
    return (
        apply_table(COMPANY, message)
        .map(
            lambda p: overlay(
                p.merged({"name": name}), traits, cfg.company_attributes, COMPANY_SOURCE_KEYS
            )
        )
        .map(lambda p: p.merged({"address": joined_address(p.fields.get("address"))}))
    )


def _add_member(user: JSONObject, written: JSONObject) -> StepResult:
    member = Payload(
        MappingProxyType({"user_id": user.get("id"), "user_custom_id": user.get("custom_id")})
    )
    company_id = as_text(written.get("id"))
    return Success(_final("POST", ("companies", company_id, "add_member"), member))


def _company_write(payload: Payload, user: JSONObject, company: JSONObject | None) -> StepResult:
    def then(answer: Answer) -> StepResult:
        return classify_write(answer, "writing the company").bind(partial(_add_member, user))

    body = clean_body(payload.fields)
    if company is None:
        return Success(
            Call(
                Request("POST", ("companies",), body=body),
                "create the company",
                "company_write",
                then,
            )
        )
    return _with_id(company, "company").map(
        lambda cid: Call(
            Request("PUT", ("companies", cid), body=body),
            "update the company",
            "company_write",
            then,
        )
    )


def _company_lookup(payload: Payload, group_id: str, user: JSONObject | None) -> StepResult:
    if user is None:
        return Failure(errors.not_found(GROUP_USER_NOT_FOUND))

    def then(answer: Answer) -> StepResult:
        return classify_lookup(answer, "looking up the company").bind(
            partial(_company_write, payload, user)
        )

    request = Request("GET", ("companies-by-id", group_id))
    return Success(Call(request, "find the company by groupId", "company", then))


def group(cfg: Config, message: JSONObject) -> StepResult:
    def first_call(payload: Payload) -> Call:
        user_id = as_text(paths.read(message, paths.USER_ID))
        group_id = as_text(paths.read(message, paths.GROUP_ID))

        def then(answer: Answer) -> StepResult:
            return classify_lookup(answer).bind(partial(_company_lookup, payload, group_id))

        return Call(
            Request("GET", ("users-by-id", user_id)), "find the user by userId", "user", then
        )

    return group_payload(cfg, message).map(first_call)


FLOWS: Mapping[EventType, Callable[[Config, JSONObject], StepResult]] = MappingProxyType(
    {"identify": identify, "track": track, "page": page, "group": group}
)


def event_flow(cfg: Config, event: Event) -> StepResult:
    return FLOWS[event.type](cfg, event.message)
