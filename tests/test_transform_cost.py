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

from pipeline import process
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
