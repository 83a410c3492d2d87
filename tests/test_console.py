"""The console (DELIVERY §8) in-process: the service's ASGI app through starlette's
TestClient, delivering to a sandbox in a thread. Auth, CSRF, wrong tries, escaping, the
API's shapes, and a replay that the running service delivers in position order."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import BEARER, HOSTILE, TOKEN, console_options, create_user_in_sandbox
from serve_helpers import (
    API_KEY,
    WRITE_KEY,
    auth,
    identify,
    ledger_counts,
    options,
    sandbox_state,
    track,
    tracks_by_user,
    wait_until,
)
from starlette.testclient import TestClient

from pipeline.serve import Service


@pytest.fixture
def service(sandbox: str, ledger: Path) -> Service:
    return Service.open(console_options(ledger, sandbox))


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(service.app) as test_client:
        yield test_client


def move_clock(service: Service) -> list[float]:
    """The console's clock, moved by the test: [now]."""
    assert service.console is not None
    now = [1000.0]
    service.console.gate.clock = lambda: now[0]
    return now


def ingest(client: TestClient, *events: dict[str, object]) -> None:
    answer = client.post("/v1/batch", json={"batch": list(events)}, headers=auth())
    assert answer.status_code == 200, answer.text


def sign_in(client: TestClient, token: str = TOKEN) -> int:
    answer = client.post("/console/signin", data={"token": token}, follow_redirects=False)
    return int(answer.status_code)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def ghost_failures(client: TestClient, ledger: Path) -> None:
    """Two tracks of a user User.com does not know: rejected, one group."""
    ingest(client, track("ghost", 1), track("ghost", 2))
    assert wait_until(lambda: ledger_counts(ledger).get("rejected") == 2)


def test_without_a_token_everything_under_console_is_404(sandbox: str, ledger: Path) -> None:
    service = Service.open(options(ledger, sandbox))
    with TestClient(service.app) as client:
        for path in ("/console/", "/console/failures", "/console/api/overview", "/console"):
            assert client.get(path, headers=BEARER).status_code == 404, path
        assert client.post("/console/api/requeue", json={"keys": []}).status_code == 404


def test_the_sign_in_form_has_a_token_field_and_a_sign_in_button(client: TestClient) -> None:
    page = client.get("/console/").text
    assert '<label for="token">Token</label>' in page
    assert '<input id="token" name="token" type="password"' in page
    assert '<button type="submit">Sign in</button>' in page


def test_a_good_token_sets_an_http_only_strict_session_cookie(client: TestClient) -> None:
    answer = client.post("/console/signin", data={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    overview = client.get("/console/")
    assert "<h1>Overview</h1>" in overview.text


def test_a_wrong_token_is_401_and_five_in_a_minute_make_429_for_a_minute(
    service: Service, client: TestClient
) -> None:
    now = move_clock(service)
    for second in (0, 5, 10, 15, 20):  # the fifth wrong try at 1020 blocks until 1080
        now[0] = 1000.0 + second
        assert sign_in(client, "wrong") == 401
    now[0] = 1025.0
    assert sign_in(client, TOKEN) == 429  # even the right one, for a minute
    now[0] = 1079.0
    assert sign_in(client, "wrong") == 429
    now[0] = 1081.0
    assert sign_in(client, TOKEN) == 303


def test_wrong_tries_spread_over_more_than_a_minute_are_not_blocked(
    service: Service, client: TestClient
) -> None:
    now = move_clock(service)
    for _ in range(8):
        assert sign_in(client, "wrong") == 401
        now[0] += 15


def test_pages_and_the_api_need_the_token(client: TestClient) -> None:
    assert client.get("/console/failures").status_code == 401
    assert client.get("/console/api/overview").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/console/api/failures", headers=wrong).status_code == 401
    assert client.get("/console/api/overview", headers=BEARER).status_code == 200


def test_a_state_change_with_the_cookie_needs_the_csrf_token(
    client: TestClient, ledger: Path
) -> None:
    ghost_failures(client, ledger)
    assert sign_in(client) == 303
    reason = client.get("/console/api/failures").json()["groups"][0]["reason"]
    body = {"reason": reason}
    assert client.post("/console/api/requeue", json=body).status_code == 403
    wrong = client.post("/console/api/requeue", json=body, headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    form = client.post(
        "/console/replay", data={"reason": reason, "app": "acme"}, follow_redirects=False
    )
    assert form.status_code == 403
    assert ledger_counts(ledger)["rejected"] == 2  # nothing changed
    csrf = csrf_of(client.get("/console/failures").text)
    done = client.post("/console/api/requeue", json=body, headers={"X-CSRF-Token": csrf})
    assert done.json() == {"requeued": 2}


def test_the_bearer_token_needs_no_csrf_token(client: TestClient, ledger: Path) -> None:
    ghost_failures(client, ledger)
    keys = client.get("/console/api/failures", headers=BEARER).json()["groups"][0]["samples"]
    answer = client.post("/console/api/requeue", json={"keys": keys}, headers=BEARER)
    assert answer.json() == {"requeued": 2}


def test_failures_group_one_cause_of_many_users(client: TestClient, ledger: Path) -> None:
    ingest(client, *(track(f"ghost-{n}", n) for n in range(12)))
    assert wait_until(lambda: ledger_counts(ledger).get("rejected") == 12)
    groups = client.get("/console/api/failures", headers=BEARER).json()["groups"]
    assert len(groups) == 1
    group = groups[0]
    assert set(group) == {"app", "reason", "count", "first_seen", "last_seen", "samples"}
    assert group["app"] == "acme"
    assert group["count"] == 12
    assert group["reason"].startswith("rejected: ")
    assert len(group["samples"]) == 10
    assert group["samples"][0] == "acme:ghost-0-track-0"
    assert group["first_seen"] <= group["last_seen"]


def test_the_overview_api_names_every_number_of_each_app(client: TestClient, ledger: Path) -> None:
    ingest(client, identify("ada"), track("ada", 1), track("ghost", 1))
    assert wait_until(lambda: ledger_counts(ledger).get("delivered") == 2)
    assert wait_until(lambda: ledger_counts(ledger).get("rejected") == 1)
    app = client.get("/console/api/overview", headers=BEARER).json()["apps"]["acme"]
    assert app["delivered"] == 2
    assert app["rejected"] == 1
    assert (app["queued"], app["failed"], app["held"], app["pending"]) == (0, 0, 0, 0)
    assert app["delivered_last_hour"] == 2
    assert app["oldest_queued_age_s"] is None
    assert 0 <= app["latency_p50_s"] <= app["latency_p95_s"]
    assert app["paused"] is None
    assert app["throttled_last_hour"] == 0
    assert app["rate"] is not None  # requests per second over the last minute of samples
    assert app["rate"] >= 0
    assert app["rate_limit"] > 0


def test_the_event_api_tells_the_explain_story(client: TestClient, ledger: Path) -> None:
    ghost_failures(client, ledger)
    story = client.get("/console/api/events/acme%3Aghost-track-1", headers=BEARER).json()
    assert story["key"] == "acme:ghost-track-1"
    assert story["status"] == "rejected"
    assert story["position"] == 1
    assert story["requests"][-1].endswith("-> 404")
    assert json.loads(story["line"])["messageId"] == "ghost-track-1"
    assert story["next"].startswith("it can never succeed as it is")
    short = client.get("/console/api/events/ghost-track-2", headers=BEARER).json()
    assert short["key"] == "acme:ghost-track-2"
    assert client.get("/console/api/events/nope", headers=BEARER).status_code == 404


def test_a_held_event_names_the_event_it_waits_behind(
    sandbox: str, ledger: Path, tmp_path: Path
) -> None:
    from pipeline.sandbox import SandboxOptions, parse_forced, serve_in_thread

    forced = (parse_forced("users-by-id-events-create=503x100"),)
    with serve_in_thread(SandboxOptions(api_key=API_KEY, forced=forced)) as failing:
        opts = console_options(ledger, failing, event_attempts=1, retry_initial=30)
        with TestClient(Service.open(opts).app) as client:
            ingest(client, identify("u1"), track("u1", 1), track("u1", 2))
            assert wait_until(lambda: ledger_counts(ledger).get("held") == 1, timeout=30)
            timeline = client.get("/console/api/users/acme/u1", headers=BEARER).json()
    assert timeline["app"] == "acme"
    assert timeline["user"] == "u1"
    events = timeline["events"]
    assert [event["position"] for event in events] == [1, 2, 3]
    assert [event["status"] for event in events] == ["delivered", "failed", "held"]
    assert events[2]["waits_behind"] == "acme:u1-track-1"
    assert events[1]["waits_behind"] is None


def test_replay_is_delivered_by_the_running_service_in_position_order(
    sandbox: str, client: TestClient, ledger: Path
) -> None:
    ingest(client, *(track("ghost", n) for n in range(5)))
    assert wait_until(lambda: ledger_counts(ledger).get("rejected") == 5)
    create_user_in_sandbox(sandbox, "ghost")
    reason = client.get("/console/api/failures", headers=BEARER).json()["groups"][0]["reason"]
    answer = client.post(
        "/console/api/requeue", json={"reason": reason, "app": "acme"}, headers=BEARER
    )
    assert answer.json() == {"requeued": 5}
    assert wait_until(lambda: ledger_counts(ledger).get("delivered") == 5)
    assert tracks_by_user(sandbox_state(sandbox))["ghost"] == [0, 1, 2, 3, 4]
    assert client.get("/console/api/failures", headers=BEARER).json() == {"groups": []}


def test_a_replay_never_sends_a_delivered_event_again(client: TestClient, ledger: Path) -> None:
    ingest(client, identify("ada"))
    assert wait_until(lambda: ledger_counts(ledger).get("delivered") == 1)
    answer = client.post(
        "/console/api/requeue", json={"keys": ["acme:ada-identify"]}, headers=BEARER
    )
    assert answer.json() == {"requeued": 0}


def test_a_requeue_body_that_is_not_one_is_400_in_one_line(client: TestClient) -> None:
    for body in (b"[]", b"{}", b'{"keys": "x"}', b'{"reason": "x", "app": "other"}', b"{"):
        answer = client.post("/console/api/requeue", content=body, headers=BEARER)
        assert answer.status_code == 400, body
        assert "\n" not in answer.json()["message"]


def test_a_hostile_trait_renders_as_text_and_only_on_the_event_page(
    client: TestClient, ledger: Path
) -> None:
    ingest(client, track("ghost", 1, properties={"note": HOSTILE}))
    assert wait_until(lambda: ledger_counts(ledger).get("rejected") == 1)
    event = client.get("/console/events/acme%3Aghost-track-1", headers=BEARER).text
    assert "<script>" not in event
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in event
    for path in ("/console/", "/console/failures", "/console/users/acme/ghost"):
        assert "pwned" not in client.get(path, headers=BEARER).text, path


def test_no_page_or_answer_holds_a_key_or_the_token(client: TestClient, ledger: Path) -> None:
    ghost_failures(client, ledger)
    assert sign_in(client) == 303
    paths = (
        "/console/",
        "/console/failures",
        "/console/events/acme%3Aghost-track-1",
        "/console/users/acme/ghost",
        "/console/api/overview",
        "/console/api/failures",
        "/console/api/events/acme%3Aghost-track-1",
        "/console/api/users/acme/ghost",
    )
    for path in paths:
        text = client.get(path).text
        for secret in (API_KEY, WRITE_KEY, TOKEN):
            assert secret not in text, (path, secret)


def test_search_finds_a_key_a_message_id_and_a_user(client: TestClient, ledger: Path) -> None:
    ghost_failures(client, ledger)

    def where(query: str) -> str:
        answer = client.get(
            "/console/search", params={"q": query}, headers=BEARER, follow_redirects=False
        )
        return str(answer.headers.get("location", answer.status_code))

    assert where("acme:ghost-track-1") == "/console/events/acme%3Aghost-track-1"
    assert where("ghost-track-2") == "/console/events/acme%3Aghost-track-2"
    assert where("ghost") == "/console/users/acme/ghost"
    assert where("nobody") == "404"


def test_the_pages_render_with_their_numbers(client: TestClient, ledger: Path) -> None:
    ghost_failures(client, ledger)
    overview = client.get("/console/", headers=BEARER).text
    assert "<svg" in overview
    assert "queue depth" in overview
    failures = client.get("/console/failures", headers=BEARER).text
    assert '<span class="count">2</span>' in failures
    assert failures.count('<button type="submit">Replay</button>') == 1
    user = client.get("/console/users/acme/ghost", headers=BEARER).text
    assert user.index("acme:ghost-track-1") < user.index("acme:ghost-track-2")
    css = client.get("/console/static/console.css")
    assert css.status_code == 200
    assert "text/css" in css.headers["content-type"]


def test_every_template_and_asset_is_package_data() -> None:
    """A non-editable install carries only what package-data names: every file of the
    console's templates and static folders must match one of its patterns."""
    import fnmatch
    import tomllib

    import pipeline.console

    folder = Path(pipeline.console.__file__).parent
    settings = tomllib.loads((folder.parent.parent / "pyproject.toml").read_text())
    patterns = settings["tool"]["setuptools"]["package-data"]["pipeline.console"]
    shipped = [
        path.relative_to(folder).as_posix()
        for sub in ("templates", "static")
        for path in (folder / sub).iterdir()
    ]
    assert shipped
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_the_chart_counts_what_each_minute_added_and_stacks_it() -> None:
    from pipeline.console.charts import HEIGHT, Series, chart

    series = Series()
    start = 1_800_000_000.0 - 1_800_000_000.0 % 60
    series.sample(start, {"delivered": 100, "failed": 0, "throttled": 0}, queued=5)
    series.sample(start + 30, {"delivered": 130, "failed": 10, "throttled": 2}, queued=7)
    series.sample(start + 70, {"delivered": 150, "failed": 10, "throttled": 2}, queued=0)
    drawn = chart(series, start + 80)
    assert dict(drawn.totals) == {"delivered": 50, "failed": 10, "throttled": 2}
    assert drawn.peak == 42  # the first minute: 30 + 10 + 2
    first = [bar for bar in drawn.bars if bar.x == drawn.bars[0].x]
    assert [bar.kind for bar in first] == ["delivered", "failed", "throttled"]
    assert sum(bar.height for bar in first) == pytest.approx(HEIGHT)
    assert [bar.height for bar in drawn.queue] == [HEIGHT]  # 7 then 0: one bar
    assert drawn.minutes == 2


def test_the_overview_draws_each_minute_of_the_app(client: TestClient, ledger: Path) -> None:
    ingest(client, identify("ada"))
    assert wait_until(lambda: ledger_counts(ledger).get("delivered") == 1)
    overview = client.get("/console/", headers=BEARER).text
    assert '<rect class="delivered"' in overview


def test_wrong_bearer_tokens_count_as_wrong_tries_too(service: Service, client: TestClient) -> None:
    now = move_clock(service)
    wrong = {"Authorization": "Bearer nope"}
    for _ in range(5):
        assert client.get("/console/api/overview", headers=wrong).status_code == 401
    blocked = client.get("/console/api/overview", headers=BEARER)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) <= 60
    assert sign_in(client) == 429
    now[0] += 61
    assert client.get("/console/api/overview", headers=BEARER).status_code == 200


def test_the_sign_in_form_may_be_posted_to_console_itself(client: TestClient) -> None:
    answer = client.post("/console/", data={"token": TOKEN}, follow_redirects=False)
    assert answer.status_code == 303
    assert "HttpOnly" in answer.headers["set-cookie"]
    assert client.post("/console/", data={"token": "nope"}).status_code == 401
