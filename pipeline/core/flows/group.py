"""group (SPEC §8): find the user, find the company, write it, then add the user to it."""

from __future__ import annotations

from functools import partial
from types import MappingProxyType

from returns.result import Failure, Result, Success

from pipeline.core import errors, messages, paths
from pipeline.core.answers import Answer, classify_lookup, classify_write
from pipeline.core.calls import call, clean_body
from pipeline.core.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.flows.common import StepResult, final, url_too_long, with_id
from pipeline.core.mapping import COMPANY, COMPANY_SOURCE_KEYS, Payload, apply_table
from pipeline.core.overlay import overlay
from pipeline.core.steps import Call
from pipeline.core.types import JSON, OBJECT_TYPES, JSONObject, as_text, is_present


def joined_address(value: JSON) -> JSON:
    """An address object becomes one string: its non-empty text/number values, ", "-joined."""
    if not isinstance(value, OBJECT_TYPES):
        return value
    parts = [
        as_text(v)
        for v in value.values()
        if (isinstance(v, str) and v.strip())
        or (isinstance(v, int | float) and not isinstance(v, bool))
    ]
    return ", ".join(parts) or None


def group_traits(message: JSONObject) -> JSONObject:
    return paths.read_object(message, paths.TRAITS) or MappingProxyType({})


def check_group(message: JSONObject) -> Result[JSON, PipelineError]:
    """The event's own required fields (SPEC §8): a company name and a groupId."""
    if not is_present(group_traits(message).get("name")):
        return Failure(errors.instrumentation(messages.NAME_REQUIRED))
    group_id = paths.read(message, paths.GROUP_ID)
    if group_id is None:
        return Failure(errors.instrumentation(messages.GROUP_ID_REQUIRED))
    return Success(group_id)


def group_payload(cfg: Config, message: JSONObject) -> Result[Payload, PipelineError]:
    traits = group_traits(message)
    return (
        check_group(message)
        .bind(lambda _: apply_table(COMPANY, message))
        .map(
            lambda p: overlay(
                p.merged({"name": traits.get("name")}),
                traits,
                cfg.company_attributes,
                COMPANY_SOURCE_KEYS,
            )
        )
        .map(lambda p: p.merged({"address": joined_address(p.fields.get("address"))}))
    )


def _add_member(user: JSONObject, written: JSONObject) -> StepResult:
    member = Payload(
        MappingProxyType({"user_id": user.get("id"), "user_custom_id": user.get("custom_id")})
    )
    return Success(final("add_member", member, as_text(written.get("id"))))


def _company_write(payload: Payload, user: JSONObject, company: JSONObject | None) -> StepResult:
    def then(answer: Answer) -> StepResult:
        return classify_write(answer, "writing the company").bind(partial(_add_member, user))

    body = clean_body(payload.fields)
    if company is None:
        return Success(
            Call(call("create_company", None, body), "create the company", "company_write", then)
        )
    return with_id(company, "company").map(
        lambda cid: Call(
            call("update_company", cid, body), "update the company", "company_write", then
        )
    )


def _company_lookup(payload: Payload, group_id: str, user: JSONObject | None) -> StepResult:
    if user is None:
        return Failure(errors.not_found(messages.GROUP_USER_NOT_FOUND))

    def then(answer: Answer) -> StepResult:
        return classify_lookup(answer, "looking up the company").bind(
            partial(_company_write, payload, user)
        )

    return Success(
        Call(call("company_by_id", group_id), "find the company by groupId", "company", then)
    )


def group(cfg: Config, message: JSONObject) -> StepResult:
    def first_call(payload: Payload) -> StepResult:
        user_id = as_text(paths.read(message, paths.USER_ID))
        group_id = as_text(paths.read(message, paths.GROUP_ID))
        # The groupId is sent only after the user lookup: refuse it before that call.
        too_long = url_too_long(call("company_by_id", group_id))
        if too_long is not None:
            return Failure(too_long)

        def then(answer: Answer) -> StepResult:
            return classify_lookup(answer).bind(partial(_company_lookup, payload, group_id))

        return Success(Call(call("user_by_id", user_id), "find the user by userId", "user", then))

    return group_payload(cfg, message).bind(first_call)
