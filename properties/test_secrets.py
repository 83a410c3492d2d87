"""SPEC §9: the API key appears in no log line, error message or repr; in outputs only in the
request headers and the router envelope's echo of the input `destination`."""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from returns.result import Failure, Success

import pipeline
from pipeline.core.config import normalize_subdomain
from pipeline.core.secrets import SECRET_RUN, blank_runs
from pipeline.testing.strategies import any_items, api_keys, items, messages, valid_configs
from properties import fakes

# caplog is reset by hand in each example.
_CAPLOG = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# Keys that are not valid (spaces, non-ASCII) must not be echoed in their error either.
secrets = st.one_of(
    api_keys,
    st.builds(lambda a, b: f"{a} {b}", api_keys, api_keys),
    st.builds(lambda a: f"{a}é€", api_keys),
    st.builds(lambda a: f"  {a}\n", api_keys),
)


@st.composite
def keyed_items(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    key = draw(secrets)
    item = draw(
        st.one_of(
            items(config=valid_configs(api_key=st.just(key))),
            items(
                message=messages(with_lookup_options=False, with_user_id=True),
                config=valid_configs(api_key=st.just(key)),
            ),
            any_items().map(lambda raw: _with_key(raw, key)),
        )
    )
    if draw(st.integers(0, 4)) == 0:  # the key pasted into the subdomain field by mistake
        pasted = draw(st.sampled_from(["{}", "{}.user.com", "https://{}/", " {} ", "x{}"]))
        subdomain = pasted.format(key.strip())
        # A key that is itself a DNS label would *be* the subdomain: nothing could hide it.
        assume(normalize_subdomain(subdomain) is None)
        item["destination"]["Config"]["appSubdomain"] = subdomain
    return item, key.strip()


def _with_key(raw: Any, key: str) -> dict[str, Any]:
    if isinstance(raw, dict) and isinstance(raw.get("destination"), dict):
        config = raw["destination"].get("Config")
        if isinstance(config, dict):
            config["apiKey"] = key
            return raw
    return {"message": raw, "destination": {"Config": {"apiKey": key, "appSubdomain": "x"}}}


def _without_key_in_input(item: dict[str, Any]) -> dict[str, Any]:
    """The item less the fields where the key is put on purpose."""
    stripped = copy.deepcopy(item)
    stripped["destination"]["Config"].pop("apiKey", None)
    stripped["destination"]["Config"].pop("appSubdomain", None)
    return stripped


def _outside_headers(result: dict[str, Any]) -> str:
    """A processor/router response item as JSON, less what may hold the key (SPEC §9)."""
    shown = copy.deepcopy(result)
    shown.pop("destination", None)
    for key in ("output", "batchedRequest"):
        if key in shown:
            shown[key].pop("headers")
    return json.dumps(shown, ensure_ascii=False)


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)


def _assert_secret_kept(
    item: dict[str, Any],
    key: str,
    recorder: fakes.Recorder,
    caplog: pytest.LogCaptureFixture,
    needle: str | None = None,
) -> None:
    """`needle` (default: the whole key) is in nothing shown but the request headers."""
    shown: list[str] = []
    prepared = pipeline.prepare(item)
    shown.append(repr(prepared))
    match prepared:
        case Success(job):
            shown += [repr(job.config), str(job.config), repr(pipeline.Target.of(job.config))]
            shown.append(repr(job.step))
        case Failure(error):
            shown += [error.message, repr(error), str(error)]
    planned = pipeline.plan(item)
    shown += [repr(planned), str(planned)]
    processed = pipeline.process(item, transport=recorder.transport)
    shown.append(_outside_headers(processed))
    if "output" in processed:
        assert processed["output"]["headers"]["Authorization"] == f"Token {key}"
    routed = pipeline.process_router([item], transport=recorder.transport)
    shown += [_outside_headers(r) for r in routed]
    assert routed[0]["destination"] == item["destination"]  # the echo SPEC §11 allows
    shown.append(_logged(caplog))
    for text in shown:
        assert (needle or key) not in text, text


@_CAPLOG
@given(case=keyed_items(), answers=fakes.answer_scripts)
def test_the_api_key_is_in_no_message_repr_or_log(
    case: tuple[dict[str, Any], str],
    answers: tuple[fakes.AnswerSpec, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    item, key = case
    assume(key not in json.dumps(_without_key_in_input(item), ensure_ascii=False))
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        _assert_secret_kept(item, key, fakes.scripted(answers), caplog)


@_CAPLOG
@given(
    item=items(
        message=messages(with_lookup_options=False, with_user_id=True),
        config=valid_configs(api_key=api_keys),
    ),
    status=st.sampled_from([400, 401, 403, 409, 429, 500, 502]),
    preamble=st.integers(min_value=0, max_value=240).map(lambda n: "x" * n),
)
def test_the_api_key_stays_out_even_when_user_com_repeats_it(
    item: dict[str, Any], status: int, preamble: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SPEC §10: failure messages say what User.com answered, "and never include the key" —
    also when the answer (a proxy's, a misconfigured gateway's) quotes the Authorization
    header back, whole or cut short."""
    key = item["destination"]["Config"]["apiKey"].strip()
    assume(key[:8] not in json.dumps(_without_key_in_input(item), ensure_ascii=False))
    # Nor in what our own reprs print whatever the key (a key "user_eve…" matches the
    # field name `user_events`, which is no leak).
    masked = _with_key(copy.deepcopy(item), "#" * len(key))
    assume(key[:8] not in repr(pipeline.prepare(masked)))
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        # Any 8 leading characters of the key count as the key (a mask shows 4 at most).
        _assert_secret_kept(item, key, fakes.echoing(status, preamble), caplog, needle=key[:8])


# --- a key echoed encoded: base64, base32, hex, percent, another case, reversed -------------


def _b64(text: str, urlsafe: bool = False, padded: bool = True) -> str:
    raw = text.encode()
    encoded = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    return encoded if padded else encoded.rstrip("=")


def _key_of(header: str) -> str:
    return header.removeprefix("Token ")


def _basic(prefix: str, urlsafe: bool, padded: bool) -> Encoding:
    """Base64 of `prefix` + the key, as Basic auth's "user:KEY" is shown; what comes from the
    key alone starts after the characters that also hold the prefix's bits."""
    mixed = {"": 0, "u": 2, "u:": 3}[prefix]
    return (
        lambda header: _b64(prefix + _key_of(header), urlsafe, padded),
        lambda key: _b64(prefix + key, urlsafe)[mixed:],
    )


# How a gateway may log the Authorization header ("Token KEY"), and all it then shows that
# comes from the key alone (base64 of "u:KEY" shifts the key off the 3-byte grid).
Encoding = tuple[Callable[[str], str], Callable[[str], str]]
ENCODINGS: dict[str, Encoding] = {
    "as it is": (lambda h: h, lambda key: key),
    "base64 of the header": (_b64, _b64),
    "hex": (lambda h: h.encode().hex(), lambda key: key.encode().hex()),
    "HEX": (lambda h: h.encode().hex().upper(), lambda key: key.encode().hex().upper()),
    "upper case": (str.upper, str.upper),
    "lower case": (str.lower, str.lower),
    "reversed": (lambda h: h[::-1], lambda key: key[::-1]),
    "base32": (
        lambda h: base64.b32encode(_key_of(h).encode()).decode(),
        lambda key: base64.b32encode(key.encode()).decode(),
    ),
    "base32 of 'u:'+key": (
        lambda h: base64.b32encode(b"u:" + _key_of(h).encode()).decode(),
        lambda key: base64.b32encode(b"u:" + key.encode()).decode()[4:],
    ),
    "percent-encoded": (
        lambda h: "".join(f"%{byte:02X}" for byte in h.encode()),
        lambda key: "".join(f"%{byte:02X}" for byte in key.encode()),
    ),
    "percent-encoded, lower case": (
        lambda h: "".join(f"%{byte:02x}" for byte in h.encode()),
        lambda key: "".join(f"%{byte:02x}" for byte in key.encode()),
    ),
} | {
    f"base64 of {prefix or ''!r}+key{' urlsafe' * urlsafe}{' unpadded' * (not padded)}": (
        _basic(prefix, urlsafe, padded)
    )
    for prefix in ("", "u", "u:")
    for urlsafe in (False, True)
    for padded in (False, True)
}


def _shown_forms(key: str) -> list[str]:
    """Every form of the key a gateway may show (the oracle the blanking is checked against)."""
    return [region(key) for _encode, region in ENCODINGS.values()]


@_CAPLOG
@given(
    item=items(
        message=messages(with_lookup_options=False, with_user_id=True),
        config=valid_configs(api_key=api_keys),
    ),
    status=st.sampled_from([400, 401, 403, 429, 500, 502]),
    encoding=st.sampled_from(sorted(ENCODINGS)),
)
def test_the_api_key_stays_out_when_user_com_repeats_it_encoded(
    item: dict[str, Any], status: int, encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway echoing the key base64'd (as in Basic auth), hex'd, in another case or
    reversed leaks it as surely as a plain echo: 16 characters of it are never shown."""
    key = item["destination"]["Config"]["apiKey"].strip()
    encode, region = ENCODINGS[encoding]
    needle = region(key)[:SECRET_RUN]
    assume(needle not in json.dumps(_without_key_in_input(item), ensure_ascii=False))
    masked = _with_key(copy.deepcopy(item), "#" * len(key))
    assume(needle not in repr(pipeline.prepare(masked)))
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        _assert_secret_kept(item, key, fakes.echoing(status, "", encode), caplog, needle=needle)


# --- a key quoted in part: every stretch of 16 or more of its characters is blanked ---------

key_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=16, max_size=80)


@st.composite
def quoting_texts(draw: st.DrawFn) -> tuple[str, str]:
    """A key, and text that quotes pieces of it, as it is or in any form a gateway shows it
    in (any length, anywhere), among other text."""
    key = draw(key_text)
    pieces: list[str] = []
    for _ in range(draw(st.integers(0, 4))):
        encode, _region = ENCODINGS[draw(st.sampled_from(sorted(ENCODINGS)))]
        shown = encode(f"Token {key}")
        low = draw(st.integers(0, len(shown) - 1))
        high = draw(st.integers(low + 1, len(shown)))
        pieces.append(shown[low:high])
        pieces.append(draw(st.text(max_size=12)))
    return key, draw(st.text(max_size=12)) + "".join(pieces)


def _pieces_of_the_key(text: str, key: str, run: int) -> list[str]:
    forms = _shown_forms(key)
    return [
        text[i : i + run]
        for i in range(len(text) - run + 1)
        if any(text[i : i + run] in form for form in forms)
    ]


@given(case=quoting_texts())
def test_no_16_characters_of_the_key_survive_blanking(case: tuple[str, str]) -> None:
    key, text = case
    assume("\x00" not in text)
    blanked = blank_runs(text, key, "\x00")
    for kept in blanked.split("\x00"):
        assert not _pieces_of_the_key(kept, key, SECRET_RUN), (kept, key)


@given(case=quoting_texts())
def test_blanking_leaves_text_with_no_16_characters_of_the_key_alone(
    case: tuple[str, str],
) -> None:
    key, text = case
    if not _pieces_of_the_key(text, key, SECRET_RUN):
        assert blank_runs(text, key, "#") == text
    # Blanking twice changes nothing more (the marker is not part of the key).
    assume("#" not in key)
    once = blank_runs(text, key, "#")
    assert blank_runs(once, key, "#") == once


@given(key=api_keys, start=st.integers(0, 48), length=st.integers(16, 64))
def test_any_quoted_stretch_of_a_real_key_is_blanked(key: str, start: int, length: int) -> None:
    quoted = key.strip()[start : start + length]
    assume(len(quoted) >= SECRET_RUN)
    shown = blank_runs(f'{{"detail": "bad token {quoted}…"}}', key.strip(), "<apiKey>")
    assert shown == '{"detail": "bad token <apiKey>…"}'


def test_reprs_show_the_key_length_only() -> None:
    """Not even its first characters: 4 of a 17-character key is a quarter of it."""
    key = "sQ7kZ-secret-9x2W"
    config = {"apiKey": key, "appSubdomain": "acme"}
    cfg = pipeline.parse_config(config).unwrap()
    with pipeline.Destination(config) as destination:
        shown = [repr(cfg), str(cfg), repr(pipeline.Target.of(cfg)), repr(destination)]
    for text in shown:
        assert "17 chars" in text, text
        for start in range(len(key) - 2):
            assert key[start : start + 3] not in text, text
