"""`usercom serve` against poison values (issue 13 items 3, 4): one request is admitted whole or
not at all, every key encodes, and a value Python cannot hold costs only its own event.

The service runs in a thread in front of a sandbox, both on loopback sockets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import (
    API_KEY,
    SUBDOMAIN,
    Running,
    health,
    identify,
    ledger_counts,
    ledger_rows,
    options,
    post,
    sandbox_state,
    service_in_thread,
    track,
    wait_until,
)

from pipeline.core.messages import EVENT_TOO_DEEP
from pipeline.delivery.ledger import Ledger, LedgerError

SURROGATE_ID = '{"type":"track","userId":"p1","event":"Cut","messageId":"bad\\ud800id"}'
HUGE_INT = '{"type":"track","userId":"p1","event":"Big","messageId":"m-big","properties":{"n":%s}}'
OUT_OF_RANGE = (
    '{"type":"track","userId":"p1","event":"Inf","messageId":"m-inf","properties":{"n":1e999}}'
)
CUT_EMOJI = (
    '{"type":"track","userId":"p1","event":"Liked \\ud83d","messageId":"m-emoji",'
    '"properties":{"note":"half \\ud83d an emoji"}}'
)


@pytest.fixture
def service(sandbox: str, ledger: Path) -> Iterator[Running]:
    with service_in_thread(options(ledger, sandbox)) as running:
        yield running


def batch_text(*events: str) -> bytes:
    return ('{"batch": [' + ",".join(events) + "]}").encode()


def post_text(service: Running, path: str, content: bytes) -> httpx.Response:
    return post(service.url, path, content=content, headers={"Content-Type": "application/json"})


def queued_never_negative(service: Running) -> None:
    seen = health(service.url)
    assert seen["queued"] >= 0, seen
    assert all(app["queued"] >= 0 for app in seen["apps"].values()), seen


def test_poison_values_between_good_events_cost_only_their_own_event(
    service: Running, sandbox: str, ledger: Path
) -> None:
    good = [json.dumps(identify("p1")), json.dumps(track("p1", 1)), json.dumps(track("p1", 2))]
    body = batch_text(
        good[0], SURROGATE_ID, HUGE_INT % ("9" * 5000), good[1], OUT_OF_RANGE, good[2]
    )
    answer = post_text(service, "/v1/batch", body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "events": 6, "duplicates": 0, "rejected": 2}
    queued_never_negative(service)
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 4)
    assert wait_until(lambda: health(service.url)["queued"] == 0)
    rows = {row.key: row for row in ledger_rows(ledger)}
    assert rows[f"{SUBDOMAIN}:bad\\ud800id"].status == "delivered"
    big, inf = rows[f"{SUBDOMAIN}:m-big"], rows[f"{SUBDOMAIN}:m-inf"]
    assert (big.status, inf.status) == ("rejected", "rejected")
    assert "properties.n is an integer of 5000 digits" in (big.error or "")
    assert "properties.n is a number out of range (1e999)" in (inf.error or "")
    state = sandbox_state(sandbox)
    assert sorted(e["name"] for e in state["events"]) == ["Cut", "Product Viewed", "Product Viewed"]
    queued_never_negative(service)


def test_a_request_whose_storing_fails_midway_stores_none_of_it(
    service: Running, ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Ledger.enqueue
    calls: list[str] = []

    def second_fails(self: Ledger, key: str, *args: Any, **kwargs: Any) -> int:
        calls.append(key)
        if len(calls) == 2:
            raise OSError("disk I/O error (injected)")
        return real(self, key, *args, **kwargs)

    monkeypatch.setattr(Ledger, "enqueue", second_fails)
    batch = {"batch": [identify("a1"), track("a1", 1), track("a1", 2)]}
    answer = post(service.url, "/v1/batch", batch)
    assert answer.status_code == 503
    assert answer.json()["code"] == "not_stored"
    assert sum(ledger_counts(ledger).values()) == 0
    assert health(service.url)["queued"] == 0
    monkeypatch.setattr(Ledger, "enqueue", real)
    again = post(service.url, "/v1/batch", batch)
    assert again.status_code == 200, again.text
    assert again.json()["duplicates"] == 0
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 3)
    queued_never_negative(service)


def test_a_cut_emoji_is_delivered_and_the_sandbox_state_page_shows_it(
    service: Running, sandbox: str, ledger: Path
) -> None:
    answer = post_text(service, "/v1/batch", batch_text(json.dumps(identify("p1")), CUT_EMOJI))
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == 0
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2), ledger_rows(ledger)
    stored = {row.key: row for row in ledger_rows(ledger)}[f"{SUBDOMAIN}:m-emoji"]
    stored.line.decode("utf-8")  # the line kept is UTF-8 text, the escape written back
    state = httpx.get(f"{sandbox}/__sandbox__/state", timeout=10)
    assert state.status_code == 200
    (event,) = state.json()["events"]
    assert event["data"]["note"] == "half \ud83d an emoji"


@pytest.mark.parametrize("path", ["/v0/destinations/user", "/routerTransform"])
def test_the_transformer_api_errs_only_the_item_with_an_out_of_range_number(
    service: Running, path: str
) -> None:
    destination = {"Config": {"apiKey": API_KEY, "appSubdomain": SUBDOMAIN}}
    good = {"type": "identify", "userId": "t1", "traits": {"email": "t1@example.com"}}
    item = json.dumps({"message": good, "destination": destination, "metadata": {"jobId": 1}})
    echoed = {"jobId": 2, "score": "SCORE"}
    poison = json.dumps({"message": good, "destination": destination, "metadata": echoed})
    poison = poison.replace('"SCORE"', "1e999")
    third = item.replace('"jobId": 1', '"jobId": 3')
    items = f"[{item}, {poison}, {third}]"
    content = items if path.startswith("/v0") else f'{{"destType": "USER", "input": {items}}}'
    answer = httpx.post(
        f"{service.url}{path}",
        content=content.encode(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    got = answer.json() if path.startswith("/v0") else answer.json()["output"]
    assert [one["statusCode"] for one in got] == [200, 400, 200]
    assert "metadata.score is a number out of range (1e999)" in got[1]["error"]
    jobs = [one["metadata"] if path.startswith("/v0") else one["metadata"][0] for one in got]
    assert [job["jobId"] for job in jobs] == [1, 2, 3]
    assert jobs[1]["score"] == "1e999"


def test_send_and_serve_key_an_identifier_that_is_not_unicode_the_same_way() -> None:
    from pipeline.core.config import parse_config
    from pipeline.delivery.incoming import incoming
    from pipeline.serve.ingest import admission

    cfg = parse_config({"apiKey": API_KEY, "appSubdomain": SUBDOMAIN}).unwrap()
    event = json.loads(SURROGATE_ID)
    sent = incoming(cfg, 1, SURROGATE_ID.encode())
    served = admission(SUBDOMAIN, event, "batch", "2024-01-01T00:00:00.000Z", 32 * 1024)
    assert sent.key == served.key == f"{SUBDOMAIN}:bad\\ud800id"
    assert sent.problem is None
    assert served.rejected is None
    served.line.decode("utf-8")


def test_one_admission_is_kept_or_discarded_whole_even_past_a_batch_commit(tmp_path: Path) -> None:
    with Ledger.open_writer(tmp_path / "l.sqlite", SUBDOMAIN) as book:
        book.enqueue("before", "h", b"{}")

        def admit_then_fail() -> None:
            with book.atomic():
                for number in range(1500):  # past the 1,000 enqueues one batch commits
                    book.enqueue(f"k{number}", "h", b"{}")
                raise RuntimeError("the request could not be stored")

        with pytest.raises(RuntimeError):
            admit_then_fail()
        with book.atomic():
            after = book.enqueue("after", "h", b"{}")
        book.flush()
        assert [row.key for row in book.rows()] == ["before", "after"]
        assert after == 2


def test_writes_sqlite_rolled_back_under_an_admission_are_never_reported_committed(
    tmp_path: Path,
) -> None:
    with Ledger.open_writer(tmp_path / "l.sqlite", SUBDOMAIN) as book:
        with book.atomic():
            book.enqueue("earlier-request", "h", b"{}")  # same group, not committed yet

        def storing_fails_and_sqlite_rolls_back() -> None:
            with book.atomic():
                book.enqueue("this-request", "h", b"{}")
                book._db.execute("ROLLBACK")  # what SQLite does itself on some errors
                raise OSError("database or disk is full")

        with pytest.raises(OSError, match="full"):
            storing_fails_and_sqlite_rolls_back()
        with pytest.raises(LedgerError, match="rolled back"):
            book.flush()
        assert list(book.rows()) == []
        assert book.enqueue("retried", "h", b"{}") == 1
        book.flush()
        assert [row.key for row in book.rows()] == ["retried"]


def test_the_transformer_api_echoes_a_cut_emoji_instead_of_failing(service: Running) -> None:
    destination = json.dumps({"Config": {"apiKey": API_KEY, "appSubdomain": SUBDOMAIN}})
    message = '{"type": "identify", "userId": "e1", "traits": {"name": "Ann \\ud83d"}}'
    body = (
        f'[{{"message": {message}, "destination": {destination}, "metadata": {{"n": "\\ud800"}}}}]'
    )
    answer = httpx.post(
        f"{service.url}/v0/destinations/user",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    (item,) = answer.json()
    assert item["statusCode"] == 200
    assert item["metadata"] == {"n": "\ud800"}
    assert item["output"]["body"]["JSON"]["name"] == "Ann \ud83d"


def deep_event(message_id: str, depth: int = 1000) -> str:
    """A track whose property is nested `depth` deep: about 2 KB, too deep for `json.loads`."""
    nested = "[" * depth + "]" * depth
    return (
        f'{{"type":"track","userId":"p1","event":"Deep","messageId":"{message_id}",'
        f'"properties":{{"n":{nested}}}}}'
    )


def rows_by_key(ledger: Path) -> dict[str, Any]:
    return {row.key: row for row in ledger_rows(ledger)}


def deep_key(text: str) -> str:
    """The key `send` gives a line it cannot read: the app and the SHA-256 of its bytes."""
    return f"{SUBDOMAIN}:sha256:{hashlib.sha256(text.encode()).hexdigest()}"


@pytest.mark.parametrize("path", ["/v1/batch", "/webhook"])
def test_one_deeply_nested_event_is_rejected_alone_and_its_neighbours_delivered(
    service: Running, sandbox: str, ledger: Path, path: str
) -> None:
    deep = deep_event("m-deep")
    events = [
        json.dumps(identify("p1")),
        json.dumps(track("p1", 1)),
        deep,
        json.dumps(track("p1", 2)),
    ]
    body = batch_text(*events) if path == "/v1/batch" else ("[" + ",".join(events) + "]").encode()
    answer = post_text(service, path, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "events": 4, "duplicates": 0, "rejected": 1}
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 3), ledger_rows(ledger)
    row = rows_by_key(ledger)[deep_key(deep)]
    assert (row.status, row.error) == ("rejected", EVENT_TOO_DEEP)
    assert row.line == deep.encode()  # kept as sent, for `usercom failed --rejected`
    names = sorted(e["name"] for e in sandbox_state(sandbox)["events"])
    assert names == ["Product Viewed", "Product Viewed"]
    queued_never_negative(service)


def test_send_rejects_the_same_deep_event_with_the_same_key_and_reason() -> None:
    from pipeline.core.config import parse_config
    from pipeline.delivery.incoming import incoming

    cfg = parse_config({"apiKey": API_KEY, "appSubdomain": SUBDOMAIN}).unwrap()
    deep = deep_event("m-deep")
    sent = incoming(cfg, 1, deep.encode())
    assert (sent.key, sent.problem) == (deep_key(deep), EVENT_TOO_DEEP)


def test_a_deep_single_event_is_filed_rejected_not_refused(service: Running, ledger: Path) -> None:
    deep = deep_event("m-one")
    answer = post_text(service, "/v1/track", deep.encode())
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == 1
    assert rows_by_key(ledger)[deep_key(deep)].error == EVENT_TOO_DEEP


@pytest.mark.parametrize("path", ["/v0/destinations/user", "/routerTransform"])
def test_the_transformer_api_errs_only_the_deep_or_not_utf8_item(
    service: Running, path: str
) -> None:
    destination = {"Config": {"apiKey": API_KEY, "appSubdomain": SUBDOMAIN}}
    good = {"type": "identify", "userId": "t1", "traits": {"email": "t1@example.com"}}

    def item(job: int, message: str) -> str:
        where = json.dumps(destination)
        return f'{{"message": {message}, "destination": {where}, "metadata": {{"jobId": {job}}}}}'

    latin1 = item(4, '{"type": "identify", "userId": "Jos\xe9"}').encode("latin-1")
    shown = [item(1, json.dumps(good)), item(2, deep_event("m-t")), item(3, json.dumps(good))]
    items = b"[" + ", ".join(shown).encode() + b", " + latin1 + b"]"
    content = items if path.startswith("/v0") else b'{"destType": "USER", "input": ' + items + b"}"
    answer = httpx.post(
        f"{service.url}{path}",
        content=content,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    got = answer.json() if path.startswith("/v0") else answer.json()["output"]
    assert [one["statusCode"] for one in got] == [200, 400, 200, 400]
    assert got[1]["error"] == EVENT_TOO_DEEP
    assert got[3]["error"].startswith("line is not UTF-8 text (byte ")
    jobs = [one["metadata"] if path.startswith("/v0") else one["metadata"][0] for one in got]
    assert [job["jobId"] for job in jobs] == [1, 2, 3, 4]
    if not path.startswith("/v0"):
        assert got[1]["destination"] == destination


def test_events_at_every_depth_near_the_limit_cost_only_themselves(
    service: Running, ledger: Path
) -> None:
    # Over 256 KB, so the body is read in a worker thread (a shallow stack) and its events
    # worked out on the event loop (a deeper one): some depths read there cannot be written.
    padding = [
        json.dumps({**track("p1", n), "properties": {"pad": "x" * 28_000}}) for n in range(6)
    ]
    depths = range(940, 1001)
    deep = [deep_event(f"m-{depth}", depth) for depth in depths]
    answer = post_text(
        service, "/v1/batch", batch_text(json.dumps(identify("p1")), *padding, *deep)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["events"] == 1 + len(padding) + len(deep)
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 1 + len(padding))
    assert wait_until(lambda: ledger_counts(ledger)["rejected"] == len(deep)), ledger_counts(ledger)
    rejected = [row for row in ledger_rows(ledger) if row.status == "rejected"]
    assert {row.error for row in rejected} == {EVENT_TOO_DEEP}


@pytest.mark.parametrize("path", ["/v1/batch", "/webhook"])
def test_one_event_with_bytes_that_are_not_utf8_is_rejected_alone_as_send_rejects_its_line(
    service: Running, ledger: Path, path: str
) -> None:
    from pipeline.core.config import parse_config
    from pipeline.delivery.incoming import incoming

    latin1 = '{"type":"track","userId":"p1","event":"Caf\xe9","messageId":"m-latin1"}'.encode(
        "latin-1"
    )
    events = [json.dumps(identify("p1")).encode(), latin1, json.dumps(track("p1", 1)).encode()]
    joined = b",".join(events)
    body = b'{"batch": [' + joined + b"]}" if path == "/v1/batch" else b"[" + joined + b"]"
    answer = post_text(service, path, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == 1
    assert wait_until(lambda: ledger_counts(ledger)["delivered"] == 2), ledger_rows(ledger)
    cfg = parse_config({"apiKey": API_KEY, "appSubdomain": SUBDOMAIN}).unwrap()
    sent = incoming(cfg, 1, latin1)
    row = rows_by_key(ledger)[sent.key]
    assert (row.status, row.error, row.line) == ("rejected", sent.problem, latin1)
    assert sent.problem == "line is not UTF-8 text (byte 42)"


def test_a_body_that_is_not_json_apart_from_one_bad_byte_is_still_refused(service: Running) -> None:
    body = b'{"batch": [{"type":"track","userId":"p1","event":"\xff"}, {"type": ]}'
    answer = post_text(service, "/v1/batch", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"].startswith("the body is not JSON")


DEEP_ITEM = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(
    "text",
    [
        '[ {"a": "[[{\\"]"}, [] , {} ,"x\\\\"]',
        '\ufeff{"batch" : [ 1 , {"k": [1, [2]]} ], "sentAt": "t", "context": {"b": "}"}}',
        "[]",
        '{"input": [], "destType": "USER"}',
    ],
)
def test_reading_a_body_event_by_event_reads_what_loads_reads(text: str) -> None:
    from pipeline.serve.ingest import Unreadable, salvage

    whole = json.loads(text.removeprefix("\ufeff"))
    read = salvage(text.encode()).document
    assert (read.members if isinstance(read, Unreadable) else read) == whole


@pytest.mark.parametrize(
    "text",
    [
        f'{{"batch": [{DEEP_ITEM}, ]}}',  # a trailing comma
        f'{{"batch": [{DEEP_ITEM}, {{"a": 1}}}}',  # the array is not closed
        f'{{"batch": [{DEEP_ITEM}]}} x',  # extra data
        f'{{"batch": [{DEEP_ITEM[:-1]}]}}',  # a bracket missing
        f'{{"batch": [{DEEP_ITEM}, "open]}}',  # a string not closed
        f"{{batch: [{DEEP_ITEM}]}}",  # a name that is not a string
    ],
)
def test_a_body_that_is_not_json_apart_from_a_deep_event_is_refused(text: str) -> None:
    from pipeline.serve.ingest import Refused, _loads

    with pytest.raises(Refused, match="the body is not JSON"):
        _loads(text.encode())


def test_events_read_one_by_one_still_mark_a_number_that_cannot_be_held() -> None:
    from pipeline.serve.ingest import Unreadable, salvage

    parsed = salvage(f'{{"batch": [{DEEP_ITEM}, {{"n": 1e999}}]}}'.encode())
    assert parsed.suspect
    assert isinstance(parsed.document, Unreadable)
    batch: Any = parsed.document.members["batch"]
    deep, number = batch
    assert isinstance(deep, Unreadable)
    assert deep.why == EVENT_TOO_DEEP
    assert str(number["n"]) == "1e999"


def test_reading_events_one_by_one_stops_at_a_bound() -> None:
    from pipeline.serve.ingest import READ_ONE_BY_ONE, Refused, _loads

    tiny = ",".join(["1"] * READ_ONE_BY_ONE)
    with pytest.raises(Refused, match=f"over {READ_ONE_BY_ONE} events") as refused:
        _loads(f'{{"batch": [{DEEP_ITEM}, {tiny}]}}'.encode())
    assert refused.value.status == 413
