"""What `process` does per event beyond the round trips it must make (issue 18, item 3).

Not timings (the machine is shared): counts of the work that made a processed event cost 4.6
bare MockTransport round trips, each pinned at the piece that no longer repeats it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from helpers import KEY, USER
from httpx._urlparse import urlparse

from pipeline import process, process_router, runner
from pipeline.core import secrets
from pipeline.core.endpoints import Endpoint

CONFIG = {"apiKey": KEY, "appSubdomain": "acme"}


def _answers(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=USER)


def _counting(real: Callable[..., Any], seen: list[object]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        seen.append(args)
        return real(*args, **kwargs)

    return counted


def test_a_request_to_user_com_is_built_without_parsing_its_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[object] = []
    monkeypatch.setattr("httpx._urls.urlparse", _counting(urlparse, parsed))
    message = {"type": "track", "userId": "u/1", "event": "Paid", "timestamp": "2024-05-01"}
    item = {"message": message, "destination": {"Config": CONFIG}}
    response = process(item, transport=httpx.MockTransport(_answers))
    assert response["statusCode"] == 200
    assert parsed == []


def test_an_endpoint_whose_own_path_would_need_encoding_is_refused_where_it_is_defined() -> None:
    # Requests encode only their subject; the catalogue's fixed parts are checked once, here.
    with pytest.raises(ValueError, match="would need encoding"):
        Endpoint("event", "POST", ("events by id",), "an event")
    with pytest.raises(ValueError, match="would need encoding"):
        Endpoint("event", "POST", ("users", ".."), "an event")


def _counted_key_forms(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    worked_out: list[object] = []
    counted = _counting(secrets.key_forms, worked_out)
    monkeypatch.setattr(secrets, "key_forms", counted)
    monkeypatch.setattr(runner, "key_forms", counted, raising=False)  # wherever it is imported
    return worked_out


def _group_item() -> dict[str, Any]:
    message = {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}
    return {"message": message, "destination": {"Config": CONFIG}}


def _group_answers(long_text: str) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        if "/companies-by-id/" in request.url.path:
            return httpx.Response(404, json={"detail": long_text})
        if request.url.path.endswith("/companies/"):
            return httpx.Response(201, json={"id": 3, "name": long_text})
        return httpx.Response(200, json={**USER, "date_joined": long_text})

    return answer


def test_a_key_s_encoded_forms_are_worked_out_once_for_all_the_answers_of_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fifteen forms of a 64-character key cost more than a round trip: once per target.
    worked_out = _counted_key_forms(monkeypatch)
    answers = _group_answers("2024-05-01T10:00:00.000000Z and more")
    response = process(_group_item(), transport=httpx.MockTransport(answers))
    assert response["statusCode"] == 200
    assert len(worked_out) == 1


def test_answers_too_short_to_quote_a_piece_of_the_key_work_out_none_of_its_forms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worked_out = _counted_key_forms(monkeypatch)
    response = process(_group_item(), transport=httpx.MockTransport(_group_answers("short")))
    assert response["statusCode"] == 200
    assert worked_out == []


def test_a_router_batch_works_out_one_destination_s_key_forms_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worked_out = _counted_key_forms(monkeypatch)
    transport = httpx.MockTransport(_group_answers("2024-05-01T10:00:00.000000Z and more"))
    # Each item its own copy of the config, as items parsed from one request body are.
    batch = [{**_group_item(), "destination": {"Config": dict(CONFIG)}} for _ in range(5)]
    responses = process_router(batch, transport=transport)
    assert [response["statusCode"] for response in responses] == [200] * 5
    assert len(worked_out) == 1
