"""The request the runner builds is the one httpx builds from the URL string (issue 18).

`to_httpx` skips httpx's URL parser and header normalisation where the base URL's parts are
ones httpx keeps as written; this pins that what goes out is, part for part, what httpx builds
from `request.url(base)` and the headers dict, for every endpoint, subject, body and base.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.calls import Request, headers
from pipeline.core.endpoints import CATALOGUE, Endpoint
from pipeline.core.types import freeze_object, thaw
from pipeline.runner import Target, to_httpx
from pipeline.testing.strategies import api_keys, dns_labels, identifiers, json_objects

PREFIXES = ("", "/", "/api/public", "//x", "/x/./y", "/a/../b", "/%41", "/A_b~c-d.e", "/a b")
ODD_BASES = (
    "HTTPS://Acme.User.com/api/public",
    "https://acme.user.com:443/api/public",
    "http://localhost:80",
    "http://127.0.0.1:0080/x",
    "http://[::1]:8080/api",
    "https://xn--bcher-kva.example/x",
    "https://bücher.example/x",
    "https://a_b.example/x",
)

bases = st.one_of(
    dns_labels.map(lambda label: f"https://{label}.user.com/api/public"),
    st.builds(
        lambda host, port, prefix: f"http://{host}:{port}{prefix}",
        st.sampled_from(["127.0.0.1", "localhost", "sandbox.test"]),
        st.integers(min_value=1, max_value=65535),
        st.sampled_from(PREFIXES),
    ),
    st.sampled_from(ODD_BASES),
)


def _parts(url: httpx.URL) -> tuple[Any, ...]:
    return (str(url), url.scheme, url.raw_host, url.port, url.raw_path, url.netloc)


@given(
    bases,
    api_keys,
    st.sampled_from(list(CATALOGUE.values())),
    identifiers,
    st.one_of(st.none(), json_objects()),
)
def test_the_request_sent_is_the_one_httpx_builds_from_the_url(
    base: str, key: str, endpoint: Endpoint, subject: str, body: dict[str, Any] | None
) -> None:
    request = Request(
        endpoint,
        subject if endpoint.needs_subject else None,
        None if body is None else freeze_object(body),
    )
    content = None if request.body is None else json.dumps(thaw(request.body)).encode()
    target = Target(base, key)
    expected = httpx.Request(
        request.method, request.url(target.base_url), headers=headers(key), content=content
    )
    built = to_httpx(target, request)
    assert built.method == expected.method
    assert _parts(built.url) == _parts(expected.url)
    assert built.headers.raw == expected.headers.raw
    assert built.content == expected.content
    assert built.extensions["timeout"]
