"""page (SPEC §7): url, path and timestamp required; the user lookup; `POST /site-views/`."""

from __future__ import annotations

from functools import partial
from types import MappingProxyType

from returns.result import Failure, Result, Success

from pipeline.core import errors, messages, paths
from pipeline.core.errors import PipelineError
from pipeline.core.flows.common import StepResult, final, lookup_call, require
from pipeline.core.lookup import Lookup
from pipeline.core.mapping import Payload
from pipeline.core.types import JSON, JSONObject


def page_payload(message: JSONObject) -> Result[Payload, PipelineError]:
    url = paths.read(message, paths.PAGE_URL)
    path = paths.read(message, paths.PAGE_PATH)
    stamp = paths.read(message, paths.TIMESTAMP)
    if url is None:
        return Failure(errors.instrumentation(messages.URL_REQUIRED))
    if path is None:
        return Failure(errors.instrumentation(messages.PATH_REQUIRED))
    if stamp is None:
        return Failure(errors.instrumentation(messages.TIMESTAMP_REQUIRED))
    fields = {"page_domain": url, "page_path": path, "timestamp": stamp}
    return Success(Payload(MappingProxyType(fields)))


def user_key_of(user: JSONObject) -> JSON:
    """User.com's v2 examples print the key as `key`, its mocks as `user_key` (SPEC §7)."""
    key = user.get("user_key")
    return key if key is not None else user.get("key")


def _write(payload: Payload, user: JSONObject | None) -> StepResult:
    if user is None:
        return Failure(errors.not_found(messages.PAGE_NOT_FOUND))
    return Success(final("site_view", payload.merged({"client_user": user_key_of(user)})))


def page(message: JSONObject, lookup: Lookup) -> StepResult:
    return require(message, paths.USER_ID, messages.MISSING_USER_ID).bind(
        lambda _: page_payload(message).map(lambda p: lookup_call(lookup, partial(_write, p)))
    )
