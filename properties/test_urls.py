"""URL safety (SPEC §1, §9, §12.3, §12.4): no identifier and no subdomain can move a request.

"What is sent" is judged the way an HTTP client reads the URL (RFC 3986, via `httpx.URL`),
not as the string looks: `/users-by-id/../` *is* `/api/public/`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import httpx
from httpx._urlparse import MAX_URL_LENGTH
from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

import pipeline
from pipeline.core.calls import SUBJECT_ENCODED_MAX, Request, call
from pipeline.core.config import normalize_subdomain
from pipeline.core.endpoints import CATALOGUE, Endpoint, EndpointName
from pipeline.testing.strategies import (
    api_keys,
    dns_labels,
    friendly_subdomains,
    identifiers,
    items,
    valid_configs,
)
from properties import fakes

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

# Every catalogue endpoint whose path holds its subject.
path_endpoints = st.sampled_from(
    [e for e in CATALOGUE.values() if e.query is None and e.needs_subject]
)


def _segments(url: httpx.URL) -> list[str]:
    return url.raw_path.decode("ascii").partition("?")[0].split("/")


@given(dns_labels, identifiers, path_endpoints)
def test_an_identifier_stays_one_path_segment(
    label: str, identifier: str, endpoint: Endpoint
) -> None:
    request = Request(endpoint, identifier)
    path = request.path
    assert identifier in path
    url = httpx.URL(request.url(f"https://{label}.user.com/api/public"))
    assert url.scheme == "https"
    assert url.host == f"{label}.user.com"
    segments = _segments(url)
    assert len(segments) == 3 + len(path) + 1, segments
    assert segments[:3] == ["", "api", "public"]
    assert segments[-1] == ""
    assert [unquote(s) for s in segments[3:-1]] == list(path)


@given(dns_labels, st.sampled_from(["user_by_email", "user_by_phone", "user_by_key"]), identifiers)
def test_a_query_value_round_trips(label: str, name: EndpointName, value: str) -> None:
    request = call(name, value)
    key = CATALOGUE[name].query
    assert key is not None
    url = httpx.URL(request.url(f"https://{label}.user.com/api/public"))
    assert url.host == f"{label}.user.com"
    assert url.path == "/api/public/users/search/"
    assert parse_qs(url.query.decode("ascii"), keep_blank_values=True) == {key: [value]}


@st.composite
def identify_items(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """An identify whose lookup is by `userId` (in the path) or by email (in the query)."""
    identifier = draw(identifiers)
    where = draw(st.sampled_from(["userId", "email"]))
    message: dict[str, Any] = {"type": "identify", "anonymousId": "anon-1"}
    if where == "userId":
        message["userId"] = identifier
    else:
        message["traits"] = {"email": identifier}
    item = draw(items(message=st.just(message), config=valid_configs()))
    return item, where, identifier


@given(identify_items(), st.booleans())
def test_what_is_sent_stays_on_the_users_host_and_resource(
    case: tuple[dict[str, Any], str, str], found: bool
) -> None:
    item, where, identifier = case
    recorder = fakes.user_com(user_found=found)
    result = pipeline.process(item, transport=recorder.transport)
    label = normalize_subdomain(item["destination"]["Config"]["appSubdomain"])
    lookup = recorder.requests[0].url
    assert lookup.host == f"{label}.user.com"
    if where == "userId":
        segments = _segments(lookup)
        assert segments[:4] == ["", "api", "public", "users-by-id"], segments
        assert len(segments) == 6, segments
        assert unquote(segments[4]) == identifier
    else:
        assert lookup.path == "/api/public/users/search/"
        assert parse_qs(lookup.query.decode("ascii")) == {"email": [identifier]}
    assert result["statusCode"] == 200, result
    endpoint = httpx.URL(result["output"]["endpoint"])
    assert endpoint.host == f"{label}.user.com"
    assert endpoint.path == ("/api/public/users/" + (f"{fakes.USER['id']}/" if found else ""))


subdomain_texts = st.one_of(
    st.text(max_size=30),
    st.text(st.sampled_from("aZ09-._/:@#?% \t"), max_size=20),
    friendly_subdomains(),
    st.builds(
        "{}{}{}".format,
        st.sampled_from(["", "http://", "https://", "ftp://", "//", "user:pw@", "https:/"]),
        dns_labels,
        st.sampled_from(
            [
                "",
                ".user.com",
                ".user.com.evil.com",
                ".evil.com",
                "@evil.com",
                "/evil",
                "#x",
                "?x=1",
                ":443",
                ".user.com//",
                ".user.com/api",
                "%2F..",
                ".",
            ]
        ),
    ),
)


@given(subdomain_texts, api_keys)
def test_a_subdomain_normalises_to_a_dns_label_or_is_refused(text: str, key: str) -> None:
    label = normalize_subdomain(text)
    assert label is None or DNS_LABEL.fullmatch(label), label
    match pipeline.parse_config({"apiKey": key, "appSubdomain": text}):
        case Success(config):
            assert config.subdomain == label
            url = httpx.URL(config.base_url)
            assert url.host == f"{config.subdomain}.user.com"
            assert (url.scheme, url.port, url.path) == ("https", None, "/api/public")
        case Failure(error):
            assert label is None or not text.strip()
            assert (error.status, error.category, error.error_type) == (
                400,
                "dataValidation",
                "configuration",
            )


@st.composite
def friendly_pairs(draw: st.DrawFn) -> tuple[str, str]:
    label = draw(dns_labels)
    return label, draw(friendly_subdomains(label=label))


@given(friendly_pairs(), api_keys)
def test_friendly_forms_of_a_label_normalise_to_it(pair: tuple[str, str], key: str) -> None:
    label, friendly = pair
    assert normalize_subdomain(friendly) == label
    config = pipeline.parse_config({"apiKey": key, "appSubdomain": friendly}).unwrap()
    assert config.base_url == f"https://{label}.user.com/api/public"


subject_endpoints = st.sampled_from([e for e in CATALOGUE.values() if e.needs_subject])
# A short run of any characters (multi-byte, surrogates), repeated to about the bound.
long_subjects = st.tuples(st.text(min_size=1, max_size=6), st.integers(1_000, 70_000)).map(
    lambda pair: (pair[0] * (pair[1] // len(pair[0]) + 1))[: pair[1]]
)


@given(subject_endpoints, long_subjects)
def test_a_subject_the_core_accepts_always_makes_a_url_httpx_accepts(
    endpoint: Endpoint, subject: str
) -> None:
    request = Request(endpoint, subject)
    encoded = len(quote(subject, safe="", errors="surrogatepass"))
    too_long = request.subject_too_long()
    assert (too_long is None) == (encoded <= SUBJECT_ENCODED_MAX)
    if too_long is None:
        # The longest base URL a config can have: a 63-character subdomain.
        base = f"https://{'a' * 63}.user.com/api/public"
        url = httpx.URL(request.url(base))
        assert len(str(url)) <= MAX_URL_LENGTH
    else:
        assert too_long == (len(subject), encoded)
