"""`pipeline.testing.FakeUserCom` (issue 9): the sandbox's answers as an in-process transport.

The fake and `serve_in_thread` (the sandbox over a socket) share `PublicApi`; the first tests
pin that they answer the same request sequence byte for byte (same seed, same clock), faults
included. Then: sync and async use, the drop-in API and `Destination` over it, faults, the API
key, threads, the `usercom_fake` fixture, and a plain install (no Starlette, uvicorn, typer,
rich or hypothesis).
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, get_type_hints

import httpx
import pytest

import pipeline
from pipeline.sandbox import SandboxOptions, serve_in_thread
from pipeline.sandbox.options import ForcedStatus
from pipeline.testing import FakeOptions, FakeUserCom, Raise, Received, Reply

TOKEN = "k" * 64
AUTH = {"Authorization": f"Token {TOKEN}"}
API = "/api/public"
CONFIG = {"apiKey": TOKEN, "appSubdomain": "acme"}
NOW = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
SHOWN_HEADERS = ("content-type", "location", "retry-after", "www-authenticate", "allow")


def fixed_clock() -> datetime:
    return NOW


def item(message: dict[str, Any], config: dict[str, Any] = CONFIG) -> dict[str, Any]:
    return {"message": message, "destination": {"Config": config}}


Seen = tuple[Any, ...]


def observe(client: httpx.Client, method: str, path: str, **kwargs: Any) -> tuple[Seen, Any]:
    """What a client sees of one request: status, body, headers; or the transport error."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as error:
        return ("no answer", type(error).__name__), None
    headers = tuple((name, response.headers.get(name)) for name in SHOWN_HEADERS)
    try:
        body: Any = response.json()
    except ValueError:
        body = response.content
    return (method, path, response.status_code, body, headers), body


def script(client: httpx.Client) -> list[Seen]:
    """A sequence over every route, the error answers and the state page."""
    seen: list[Seen] = []

    def ask(method: str, path: str, **kwargs: Any) -> Any:
        observed, body = observe(client, method, path, **kwargs)
        seen.append(observed)
        return body

    user = ask("POST", f"{API}/users/", json={"custom_id": "a/b", "email": "a@b.co", "gender": 2})
    key = user.get("user_key", user.get("key", "none")) if isinstance(user, dict) else "none"
    ask("GET", f"{API}/users-by-id/a%2Fb/")
    ask("GET", f"{API}/users/search/?key={key}")
    ask("GET", f"{API}/users/search/?email=a%40b.co&many=true")
    ask("GET", f"{API}/users/search/?phone_number=123")
    ask("GET", f"{API}/users/search/")
    ask("PUT", f"{API}/users/1/", json={"first_name": "Ann", "tags": ["vip"]})
    ask("POST", f"{API}/users/update_or_create/", json={"custom_id": "u2", "email": "c@d.co"})
    ask("POST", f"{API}/users/update_or_create/", json={"custom_id": "u2", "city": "Oslo"})
    ask("POST", f"{API}/events/", json={"user_id": 1, "name": "Bought", "timestamp": 1700000000})
    ask("POST", f"{API}/users-by-id/u2/events/", json={"name": "Paid", "data": {"v": 1}})
    ask("POST", f"{API}/users-by-id/nobody/events/", json={"name": "Paid"})
    ask("POST", f"{API}/site-views/", json={"client_user": key, "page_path": "/p/1"})
    ask("POST", f"{API}/companies/", json={"custom_id": "g1", "name": "Acme"})
    ask("POST", f"{API}/companies/1/add_member/", json={"user_custom_id": "u2"})
    ask("GET", f"{API}/companies-by-id/g1/")
    ask("PUT", f"{API}/companies-by-id/g1/", json={"size": 5})
    ask("GET", f"{API}/users-by-id/a%2Fb")  # 301 to the slashed URL
    ask("GET", f"{API}/users-by-id/a%2Fb/", headers={"Authorization": "Bearer nope"})
    ask("DELETE", f"{API}/users/1/")
    ask("GET", f"{API}/nothing/here/")
    ask("GET", "/elsewhere")
    ask("POST", f"{API}/users/", content=b"{not json", headers={"Content-Type": "text/plain"})
    ask("POST", f"{API}/users/", json=[1, 2])
    ask("POST", f"{API}/users/", json={"first_name": "x" * 41})
    ask("GET", "/__sandbox__/state")
    return seen


def over_socket(options: SandboxOptions, run: Callable[[httpx.Client], list[Seen]]) -> list[Seen]:
    with (
        serve_in_thread(options, clock=fixed_clock) as url,
        httpx.Client(base_url=url, headers=AUTH, follow_redirects=False) as client,
    ):
        return run(client)


def in_process(options: SandboxOptions, run: Callable[[httpx.Client], list[Seen]]) -> list[Seen]:
    fake = FakeUserCom(options, clock=fixed_clock)
    with httpx.Client(transport=fake, base_url="http://fake", headers=AUTH) as client:
        return run(client)


# --- the same answers as the sandbox ------------------------------------------------------------


def test_the_fake_answers_exactly_as_the_sandbox_over_a_socket() -> None:
    options = SandboxOptions(api_key=TOKEN, seed=11)
    expected = over_socket(options, script)
    got = in_process(options, script)
    assert got == expected
    statuses = [seen[2] for seen in got]
    assert {200, 201, 301, 400, 401, 404, 405} <= set(statuses)


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        pytest.param(
            SandboxOptions(
                seed=5,
                throttle_rate=0.2,
                error_rate=0.2,
                forced=(ForcedStatus("/events/", 503, method="POST", times=1),),
                forced_status={"companies-by-id": 302},
            ),
            {429, 302, 503},
            id="throttle-5xx-forced",
        ),
        pytest.param(
            SandboxOptions(seed=3, drop_rate=0.25, lost_response_rate=0.3),
            {"RemoteProtocolError"},
            id="drops-and-losses",
        ),
        pytest.param(
            SandboxOptions(seed=1, user_key_field="key", unknown_attributes="reject"),
            {201, 400},
            id="representation",
        ),
    ],
)
def test_faults_and_options_draw_the_same_answers_in_the_same_order(
    options: SandboxOptions, shown: set[int | str]
) -> None:
    def with_state(client: httpx.Client) -> list[Seen]:
        seen = script(client) + script(client)
        state = client.get("/__sandbox__/state").json()
        return [*seen, ("state", state)]

    expected = over_socket(options, with_state)
    got = in_process(options, with_state)
    assert got == expected
    assert shown <= {seen[-1] if seen[0] == "no answer" else seen[2] for seen in got[:-1]}


# --- as a sync and an async transport ------------------------------------------------------------


def test_one_object_is_both_a_sync_and_an_async_transport() -> None:
    fake = FakeUserCom()
    assert isinstance(fake, httpx.BaseTransport)
    assert isinstance(fake, httpx.AsyncBaseTransport)
    with httpx.Client(transport=fake, base_url="https://acme.user.com", headers=AUTH) as client:
        assert client.post(f"{API}/users/", json={"custom_id": "sync"}).status_code == 201

    async def from_a_loop() -> int:
        async with httpx.AsyncClient(
            transport=fake, base_url="https://acme.user.com", headers=AUTH
        ) as client:
            await client.post(f"{API}/users/", json={"custom_id": "async"})
            answer = await client.get(f"{API}/users-by-id/sync/")
            return answer.status_code

    assert asyncio.run(from_a_loop()) == 200
    assert [user["custom_id"] for user in fake.state["users"]] == ["sync", "async"]
    # Closing a client closes its transport: the fake keeps working for the next one.
    with httpx.Client(transport=fake, headers=AUTH) as client:
        assert client.get(f"https://acme.user.com{API}/users/2/").json()["custom_id"] == "async"


def test_state_is_a_snapshot_and_requests_record_what_was_received() -> None:
    fake = FakeUserCom()
    with httpx.Client(transport=fake, base_url="https://acme.user.com", headers=AUTH) as client:
        client.post(f"{API}/users/", json={"custom_id": "u1"})
        client.get(f"{API}/users-by-id/u1/")
    snapshot = fake.state
    assert set(snapshot) == {"users", "companies", "events", "site_views", "request_count"}
    snapshot["users"].clear()
    assert len(fake.state["users"]) == 1
    assert fake.state["request_count"] == 2
    assert fake.requests == [
        Received("POST", f"https://acme.user.com{API}/users/", {"custom_id": "u1"}),
        Received("GET", f"https://acme.user.com{API}/users-by-id/u1/"),
    ]
    assert TOKEN not in repr(fake.requests)
    assert TOKEN not in repr(fake)


def test_reset_starts_from_an_empty_account_with_fresh_faults() -> None:
    fake = FakeUserCom(forced=["POST /users/=503x1"], seed=4)
    with httpx.Client(transport=fake, base_url="https://acme.user.com", headers=AUTH) as client:
        first = [client.post(f"{API}/users/", json={}).status_code for _ in range(2)]
        key = fake.state["users"][0]["user_key"]
        fake.reset()
        assert fake.state["users"] == []
        assert fake.requests == []
        again = [client.post(f"{API}/users/", json={}).status_code for _ in range(2)]
    assert first == again == [503, 201]
    assert fake.state["users"][0]["user_key"] == key  # the same seed, the same keys


def test_keyword_options_mirror_sandbox_options() -> None:
    fields = {field.name for field in dataclasses.fields(SandboxOptions)}
    assert set(get_type_hints(FakeOptions)) == fields
    base = SandboxOptions(api_key="secret", seed=9)
    fake = FakeUserCom(
        base, throttle_rate=0.5, forced=["users-by-id=404", ForcedStatus("/x/", 500)]
    )
    assert fake.options.api_key == "secret"
    assert fake.options.seed == 9
    assert fake.options.throttle_rate == 0.5
    assert fake.options.forced == (ForcedStatus("users-by-id", 404), ForcedStatus("/x/", 500))
    with pytest.raises(ValueError, match="drop_rate"):
        FakeUserCom(drop_rate=2)


# --- the library over it -------------------------------------------------------------------------


def test_process_and_aprocess_run_their_lookups_against_the_fake() -> None:
    fake = FakeUserCom()
    identify = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.co"}}
    created = pipeline.process(item(identify), transport=fake)
    assert created["statusCode"] == 200
    assert created["output"]["endpoint"] == "https://acme.user.com/api/public/users/"
    assert [(r.method, r.url) for r in fake.requests] == [
        ("GET", "https://acme.user.com/api/public/users-by-id/u1/")
    ]
    with httpx.Client(transport=fake, headers=AUTH) as client:
        client.post("https://acme.user.com/api/public/users/", json={"custom_id": "u1"})
    updated = asyncio.run(pipeline.aprocess(item(identify), transport=fake))
    assert updated["output"]["method"] == "PUT"
    assert updated["output"]["endpoint"] == "https://acme.user.com/api/public/users/1/"


def test_destination_processes_and_delivers_through_the_fake() -> None:
    fake = FakeUserCom()
    identify = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.co"}}
    track = {"type": "track", "userId": "u1", "event": "Bought", "properties": {"v": 1}}
    with pipeline.Destination(CONFIG, transport=fake) as destination:
        assert destination.process(identify)["output"]["method"] == "POST"
        assert destination.deliver(identify).status == "delivered"
        assert destination.deliver(track).status == "delivered"

    async def twice() -> list[str]:
        async with pipeline.Destination(CONFIG, transport=fake) as destination:
            processed = await destination.aprocess(track)
            outcome = await destination.adeliver(track)
            return [processed["output"]["method"], outcome.status]

    assert asyncio.run(twice()) == ["POST", "delivered"]
    state = fake.state
    assert [user["email"] for user in state["users"]] == ["a@b.co"]
    assert [event["name"] for event in state["events"]] == ["Bought", "Bought"]


# --- faults --------------------------------------------------------------------------------------


def statuses(fake: FakeUserCom, method: str, path: str, times: int) -> list[int]:
    with httpx.Client(transport=fake, base_url="https://acme.user.com", headers=AUTH) as client:
        return [client.request(method, f"{API}{path}", json={}).status_code for _ in range(times)]


def test_a_forced_status_with_a_count_then_normal_answers() -> None:
    fake = FakeUserCom(forced=["POST /users/=503x2", "users-by-id=401"])
    assert statuses(fake, "POST", "/users/", 3) == [503, 503, 201]
    assert statuses(fake, "GET", "/users-by-id/x/", 2) == [401, 401]
    assert FakeUserCom(forced_status={"/users/": 500}).handle_request(
        httpx.Request("GET", f"https://acme.user.com{API}/users/1/")
    ).json() == {"detail": "Internal server error."}


def test_throttling_is_a_429_with_retry_after() -> None:
    fake = FakeUserCom(throttle_rate=1.0)
    with httpx.Client(transport=fake, headers=AUTH) as client:
        answer = client.get(f"https://acme.user.com{API}/users-by-id/x/")
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "1"
    assert answer.json() == {"detail": "Request was throttled."}
    limited = FakeUserCom(rate_limit_rps=1)
    assert statuses(limited, "GET", "/users-by-id/x/", 2) == [404, 429]


def test_error_rate_answers_5xx_and_writes_nothing() -> None:
    fake = FakeUserCom(error_rate=1.0)
    assert {status // 100 for status in statuses(fake, "POST", "/users/", 20)} == {5}
    assert fake.state["users"] == []


def test_a_drop_raises_remote_protocol_error_and_writes_nothing() -> None:
    fake = FakeUserCom(drop_rate=1.0)
    with (
        httpx.Client(transport=fake, headers=AUTH) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.post(f"https://acme.user.com{API}/users/", json={"custom_id": "never"})
    assert fake.state["users"] == []
    assert fake.state["request_count"] == 1
    answer = pipeline.process(item({"type": "identify", "userId": "u1"}), transport=fake)
    assert answer["statusCode"] != 200


def test_a_lost_response_writes_then_raises_remote_protocol_error() -> None:
    fake = FakeUserCom(lost_response_rate=1.0)

    async def post() -> None:
        async with httpx.AsyncClient(transport=fake, headers=AUTH) as client:
            await client.post(f"https://acme.user.com{API}/users/", json={"custom_id": "written"})

    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(post())
    assert [user["custom_id"] for user in fake.state["users"]] == ["written"]
    assert statuses(fake, "GET", "/users-by-id/written/", 1) == [200]  # reads are never lost


def test_latency_is_a_sleep_sync_and_async() -> None:
    import time

    fake = FakeUserCom(latency_ms=30)
    started = time.perf_counter()
    statuses(fake, "GET", "/users-by-id/x/", 1)

    async def one() -> None:
        async with httpx.AsyncClient(transport=fake, headers=AUTH) as client:
            await client.get(f"https://acme.user.com{API}/users-by-id/x/")

    asyncio.run(one())
    assert time.perf_counter() - started >= 0.06


# --- the API key ---------------------------------------------------------------------------------


def test_any_key_is_accepted_unless_one_is_given() -> None:
    anything = FakeUserCom()
    with httpx.Client(transport=anything) as client:
        url = f"https://acme.user.com{API}/users-by-id/x/"
        assert client.get(url, headers={"Authorization": "Token whatever"}).status_code == 404
        assert client.get(url).status_code == 401

    strict = FakeUserCom(api_key="right")
    with httpx.Client(transport=strict) as client:
        wrong = client.get(url, headers={"Authorization": "Token wrong"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Token"
        assert wrong.json() == {"detail": "Invalid token."}
        assert client.get(url, headers={"Authorization": "Token right"}).status_code == 404


def test_a_wrong_key_is_a_run_fault_for_destination_deliver() -> None:
    fake = FakeUserCom(api_key="the-real-key")
    with pipeline.Destination(CONFIG, transport=fake) as destination:
        with pytest.raises(pipeline.RunFault):
            destination.deliver({"type": "identify", "userId": "u1"})
        answer = destination.process({"type": "identify", "userId": "u1"})
    assert answer["statusCode"] != 200
    assert TOKEN not in str(answer.get("error"))


# --- threads -------------------------------------------------------------------------------------


def test_threads_may_share_one_fake() -> None:
    fake = FakeUserCom(seed=2)

    def create(number: int) -> int:
        with httpx.Client(transport=fake, headers=AUTH) as client:
            body = {"custom_id": f"u{number}", "email": f"{number}@x.co"}
            answer = client.post(f"https://acme.user.com{API}/users/", json=body)
            return int(answer.json()["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(create, range(400)))
    assert sorted(ids) == list(range(1, 401))
    state = fake.state
    assert len(state["users"]) == 400
    assert len({user["user_key"] for user in state["users"]}) == 400
    assert state["request_count"] == len(fake.requests) == 400

    destination = pipeline.Destination(CONFIG, transport=fake)
    track = [
        {"type": "track", "userId": f"u{n}", "event": "Seen", "properties": {"n": n}}
        for n in range(200)
    ]
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(destination.deliver, track))
    assert {outcome.status for outcome in outcomes} == {"delivered"}
    assert sorted(event["data"]["n"] for event in fake.state["events"]) == list(range(200))


# --- the pytest fixture --------------------------------------------------------------------------


def test_the_usercom_fake_fixture_is_a_fresh_fake(usercom_fake: FakeUserCom) -> None:
    assert isinstance(usercom_fake, FakeUserCom)
    assert usercom_fake.state["users"] == []
    assert usercom_fake.requests == []
    answer = pipeline.process(item({"type": "identify", "userId": "u1"}), transport=usercom_fake)
    assert answer["output"]["endpoint"] == "https://acme.user.com/api/public/users/"
    assert len(usercom_fake.requests) == 1


@pytest.mark.usercom(api_key="only-this", forced=["POST /users/=503x1"])
def test_the_usercom_marker_sets_the_fixture_options(usercom_fake: FakeUserCom) -> None:
    assert usercom_fake.options.api_key == "only-this"
    assert usercom_fake.options.forced == (ForcedStatus("/users/", 503, method="POST", times=1),)


# --- a plain install -----------------------------------------------------------------------------

PLAIN = textwrap.dedent(
    """
    import importlib.abc, sys

    MISSING = ("starlette", "uvicorn", "typer", "rich", "hypothesis")

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in MISSING:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    import pipeline, pipeline.testing, pipeline.testing.plugin
    import pipeline.sandbox, pipeline.sandbox.state
    from pipeline.testing import FakeUserCom, ForcedStatus, SandboxOptions

    fake = FakeUserCom(SandboxOptions(forced=(ForcedStatus("/companies/", 503, times=1),)))
    config = {"apiKey": "k" * 64, "appSubdomain": "acme"}
    item = {"message": {"type": "identify", "userId": "u1"}, "destination": {"Config": config}}
    assert pipeline.process(item, transport=fake)["statusCode"] == 200
    try:
        pipeline.testing.events
    except ModuleNotFoundError as error:
        assert error.name == "hypothesis", error
    else:
        raise AssertionError("hypothesis should be missing")
    try:
        pipeline.sandbox.create_app
    except ModuleNotFoundError as error:
        assert error.name == "starlette", error
    else:
        raise AssertionError("starlette should be missing")
    print(sorted({m.split(".")[0] for m in sys.modules} & set(MISSING)))
    """
)


def test_the_fake_and_the_plugin_need_no_extra() -> None:
    """With Starlette, uvicorn, typer, rich and hypothesis unimportable, the fake still works."""
    done = subprocess.run(
        [sys.executable, "-c", PLAIN], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- library wording and checked options (issue 14.8) --------------------------------------------


def test_a_run_fault_from_deliver_speaks_of_the_library_not_the_command() -> None:
    fake = FakeUserCom(api_key="the-real-key")
    with (
        pipeline.Destination(CONFIG, transport=fake) as destination,
        pytest.raises(pipeline.RunFault) as refused,
    ):
        destination.deliver({"type": "identify", "userId": "u1"})
    message = str(refused.value)
    assert "refused the API key (401)" in message
    assert "--" not in message  # no command-line option in a library error
    assert "ledger" not in message
    assert message.endswith("nothing was delivered: deliver the event again when fixed")

    wrong_url = FakeUserCom(forced=["POST /users/update_or_create/=404"])
    with (
        pipeline.Destination(CONFIG, transport=wrong_url) as destination,
        pytest.raises(pipeline.RunFault) as missing,
    ):
        destination.deliver({"type": "identify", "userId": "u1"})
    assert "the URL is wrong, check base_url and appSubdomain;" in str(missing.value)
    assert "--" not in str(missing.value)


def test_forced_takes_one_rule_as_a_string_too() -> None:
    fake = FakeUserCom(forced="POST /events/=503x2")
    assert fake.options.forced == (ForcedStatus("/events/", 503, method="POST", times=2),)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": "x"}, "FakeUserCom option seed must be an int, got 'x' (str)"),
        ({"seed": True}, "FakeUserCom option seed must be an int, got True (bool)"),
        ({"error_rate": "0.5"}, "FakeUserCom option error_rate must be a number, got '0.5'"),
        ({"api_key": b"k" * 64}, "FakeUserCom option api_key must be a str or None, got (bytes)"),
        ({"forced": [3]}, "FakeUserCom option forced must be a rule"),
        ({"forced_status": ["/users/"]}, "FakeUserCom option forced_status must be a mapping"),
        ({"bogus": 1}, "FakeUserCom got an unknown option 'bogus'; known: api_key, "),
    ],
)
def test_options_of_the_wrong_type_or_name_are_refused_clearly(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError) as refused:
        FakeUserCom(**options)
    assert str(refused.value).startswith(message)


def test_every_documented_option_is_checked() -> None:
    from pipeline.testing.fake import _OPTION_CHECKS

    assert set(_OPTION_CHECKS) == set(get_type_hints(FakeOptions))


def test_positional_options_must_be_sandbox_options() -> None:
    with pytest.raises(TypeError, match="FakeUserCom takes SandboxOptions or keywords, got dict"):
        FakeUserCom({"seed": 1})  # type: ignore[arg-type]


def test_a_bad_forced_rule_is_refused_in_the_librarys_words_not_the_command_lines() -> None:
    with pytest.raises(ValueError, match="forced rule") as refused:
        FakeUserCom(forced="P")
    assert str(refused.value) == (
        "bad forced rule 'P': expected [METHOD ]ROUTE=STATUS[xN], "
        "like 'POST /users/update_or_create/=503x180'"
    )
    with pytest.raises(ValueError, match="bad forced rule 'nowhere=500': unknown route"):
        FakeUserCom(forced=["users-by-id=500", "nowhere=500"])


def test_a_bad_marker_option_fails_the_test_with_one_line_naming_it() -> None:
    from pipeline.testing.plugin import fake_for

    with pytest.raises(pytest.fail.Exception) as failed:
        fake_for({"bogus": 1})
    assert str(failed.value).startswith(
        "@pytest.mark.usercom: FakeUserCom got an unknown option 'bogus'"
    )
    assert not failed.value.pytrace
    with pytest.raises(pytest.fail.Exception, match=r"@pytest.mark.usercom: bad forced rule 'x'"):
        fake_for({"forced": ["x"]})
    assert fake_for({"seed": 3}).options.seed == 3


def test_a_bad_marker_option_is_reported_once_not_with_the_error_it_came_from() -> None:
    from pipeline.testing.plugin import fake_for

    for options in ({"bogus": 1}, {"forced": "P"}):
        with pytest.raises(pytest.fail.Exception) as failed:
            fake_for(options)
        # What pytest prints for a failure with pytrace=False: the value, and any chain.
        shown = str(failed.getrepr(style="value"))
        assert "During handling" not in shown, shown
        assert shown.count("@pytest.mark.usercom:") == 1, shown
        assert len(shown.strip().splitlines()) == 1, shown


def test_the_sandbox_options_the_readme_points_to_come_from_pipeline_testing() -> None:
    import pipeline.testing
    from pipeline.testing import ForcedStatus as Forced
    from pipeline.testing import SandboxOptions as Options

    assert Options is SandboxOptions
    assert Forced is ForcedStatus
    assert {"SandboxOptions", "ForcedStatus"} <= set(pipeline.testing.__all__)
    for name in pipeline.testing.__all__:
        assert getattr(pipeline.testing, name) is not None


# --- the route-override table: the odd cases ---------------------------------------------------


def _client(fake: FakeUserCom) -> httpx.Client:
    return httpx.Client(transport=fake, base_url=f"https://acme.user.com{API}", headers=AUTH)


def test_a_route_answers_instead_of_the_account_and_the_others_are_answered_as_before() -> None:
    fake = FakeUserCom(routes={"GET /users-by-id/*": Reply(500, text="<html>oops</html>")})
    with _client(fake) as client:
        assert client.post("/users/", json={"custom_id": "u1"}).status_code == 201
        odd = client.get("/users-by-id/u1/")
        assert client.get("/users/1/").json()["custom_id"] == "u1"
    assert (odd.status_code, odd.text) == (500, "<html>oops</html>")
    assert fake.calls == ["POST /users/", "GET /users-by-id/u1/", "GET /users/1/"]
    assert fake.state["request_count"] == 2  # the routed answer never reached the account


def test_the_exact_request_wins_then_its_path_then_the_patterns_in_order() -> None:
    fake = FakeUserCom(
        routes={
            "GET /users/search/*": Reply(503),
            "GET /users/*": Reply(502),
            "GET /users/search/": Reply(201, {"path": True}),
            "GET /users/search/?email=a+b@x.io": Reply(200, {"query": True}),
        }
    )
    with _client(fake) as client:
        exact = client.get("/users/search/", params={"email": "a+b@x.io"})
        by_path = client.get("/users/search/", params={"email": "other@x.io"})
        first_pattern = client.get("/users/search/x/")
        later_pattern = client.get("/users/7/")
    assert exact.json() == {"query": True}
    assert by_path.json() == {"path": True}
    assert [first_pattern.status_code, later_pattern.status_code] == [503, 502]


def test_a_raise_route_is_a_transport_error_and_a_delay_holds_the_answer() -> None:
    fake = FakeUserCom(
        routes={
            "POST /users/": Raise(httpx.RemoteProtocolError, "connection lost"),
            "GET /users-by-id/*": Reply(200, {"id": 1}, delay=3600),
        }
    )
    with _client(fake) as client, pytest.raises(httpx.RemoteProtocolError, match="lost"):
        client.post("/users/", json={})

    async def hangs() -> None:
        async with httpx.AsyncClient(transport=fake, headers=AUTH) as client:
            await asyncio.wait_for(client.get(f"https://acme.user.com{API}/users-by-id/u/"), 0.05)

    with pytest.raises(TimeoutError):
        asyncio.run(hangs())


def test_a_route_function_sees_the_request_and_may_pass_it_on_to_the_account() -> None:
    seen: list[Received] = []

    def down_for_two(request: Received) -> Reply | None:
        seen.append(request)
        return Reply(503, {"detail": "Service unavailable."}) if len(seen) <= 2 else None

    fake = FakeUserCom(api_key=TOKEN, routes={"* *": down_for_two})
    with _client(fake) as client:
        statuses = [client.post("/users/", json={"custom_id": "u1"}).status_code for _ in "abc"]
    assert statuses == [503, 503, 201]
    assert len(fake.state["users"]) == 1
    assert seen[0].headers["authorization"] == f"Token {TOKEN}"
    assert TOKEN not in repr(seen)


def test_otherwise_scripts_every_request_no_route_names() -> None:
    fake = FakeUserCom(routes={"GET /users-by-id/u1/": Reply(200, {"id": 7})}, otherwise=Reply(404))
    with _client(fake) as client:
        assert client.get("/users-by-id/u1/").json() == {"id": 7}
        assert client.post("/users/", json={"custom_id": "u1"}).status_code == 404
    assert fake.state["users"] == []


def test_received_shows_the_request_decoded_and_as_sent() -> None:
    fake = FakeUserCom(otherwise=Reply(404))
    with _client(fake) as client:
        client.get("/users-by-id/a%2Fb/", params={"email": "a+b@x.io"})
    (seen,) = fake.requests
    assert seen.host == "acme.user.com"
    assert seen.segments == ("users-by-id", "a/b")
    assert seen.raw_path == "/users-by-id/a%2Fb/"
    assert seen.query == (("email", "a+b@x.io"),)
    assert seen.raw_query == "email=a%2Bb%40x.io"
    assert seen.call == "GET /users-by-id/a/b/?email=a+b@x.io"
