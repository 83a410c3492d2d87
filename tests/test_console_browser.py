"""The console in a real browser (DELIVERY §8): headless Chromium from the distribution's
packages (/usr/bin/chromium; .ci/run installs it where missing), driven by Playwright, with
scripts off. Sign in, see the failure group with its count, fix the cause in the sandbox,
click Replay, see the events delivered; the cookie and CSRF rules; a hostile trait as text;
the screenshots script."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import HOSTILE, TOKEN, console_options, create_user_in_sandbox
from console_screenshots import PAGES, launch, main, sign_in
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from serve_helpers import (
    Running,
    ledger_counts,
    post,
    sandbox_state,
    service_in_thread,
    track,
    tracks_by_user,
    wait_until,
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    opened = browser.new_context(java_script_enabled=False)  # the pages need no script
    yield opened
    opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def service(sandbox: str, ledger: Path) -> Iterator[Running]:
    with service_in_thread(console_options(ledger, sandbox)) as running:
        yield running


def ghosts(service: Running, ledger: Path, count: int, **extra: object) -> None:
    """Tracks of a user User.com does not have yet: all rejected, one group."""
    events = [track("ghost", n, **extra) for n in range(count)]
    assert post(service.url, "/v1/batch", {"batch": events}).status_code == 200
    assert wait_until(lambda: ledger_counts(ledger).get("rejected") == count)


def test_sign_in_see_the_group_fix_it_replay_and_see_it_delivered(
    page: Page, service: Running, sandbox: str, ledger: Path
) -> None:
    ghosts(service, ledger, 6)
    sign_in(page, service.url)
    assert page.get_by_role("heading", name="Overview").is_visible()
    page.get_by_role("link", name="Failures").click()
    group = page.locator("section.group")
    assert group.count() == 1
    assert group.locator(".count").inner_text() == "6"
    assert "No user found" in group.locator(".reason").inner_text()
    create_user_in_sandbox(sandbox, "ghost")  # the cause, fixed at User.com
    group.get_by_role("button", name="Replay").click()
    assert "6 events requeued" in page.get_by_role("status").inner_text()
    assert wait_until(lambda: ledger_counts(ledger).get("delivered") == 6)
    assert tracks_by_user(sandbox_state(sandbox))["ghost"] == [0, 1, 2, 3, 4, 5]
    page.get_by_role("link", name="Failures").click()
    assert "No failed, held or rejected events." in page.locator("main").inner_text()
    page.get_by_role("link", name="Overview").click()
    delivered = page.locator("tr", has=page.locator("th", has_text="delivered")).first
    assert delivered.locator("td").inner_text() == "6"


def test_replay_on_the_event_page_requeues_that_event(
    page: Page, service: Running, sandbox: str, ledger: Path
) -> None:
    ghosts(service, ledger, 2)
    create_user_in_sandbox(sandbox, "ghost")
    sign_in(page, service.url)
    page.get_by_label("Search").fill("ghost-track-0")
    page.get_by_role("button", name="Find").click()
    assert page.url.endswith("/console/events/acme%3Aghost-track-0")
    page.get_by_role("button", name="Replay").click()
    assert "1 event requeued" in page.get_by_role("status").inner_text()
    assert wait_until(lambda: ledger_counts(ledger).get("delivered") == 1)
    assert ledger_counts(ledger)["rejected"] == 1


def test_a_wrong_token_is_refused_and_the_session_cookie_is_http_only_and_strict(
    page: Page, context: BrowserContext, service: Running
) -> None:
    sign_in(page, service.url, "not-the-token")
    assert "wrong token" in page.get_by_role("alert").inner_text()
    assert context.cookies() == []
    sign_in(page, service.url)
    [cookie] = context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    assert TOKEN not in page.content()


def test_a_foreign_page_cannot_replay_with_the_session(
    page: Page, service: Running, ledger: Path
) -> None:
    ghosts(service, ledger, 2)
    sign_in(page, service.url)
    reason = page.request.get(f"{service.url}/console/api/failures").json()["groups"][0]
    # A form on another site posting to the console: the SameSite=Strict cookie stays home,
    # and the form has no CSRF token either.
    page.set_content(
        f'<form method="post" action="{service.url}/console/replay">'
        f'<input name="reason" value="{reason["reason"]}"><input name="app" value="acme">'
        '<button type="submit">Go</button></form>'
    )
    page.get_by_role("button", name="Go").click()
    assert "Sign in" in page.content() or "Refused" in page.content()
    # The session's own browser without the CSRF token: refused too.
    answer = page.request.post(
        f"{service.url}/console/api/requeue", data={"reason": reason["reason"]}
    )
    assert answer.status == 403
    assert ledger_counts(ledger)["rejected"] == 2


def test_a_hostile_trait_is_shown_as_text(page: Page, service: Running, ledger: Path) -> None:
    ghosts(service, ledger, 1, properties={"note": HOSTILE})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    sign_in(page, service.url)
    page.goto(f"{service.url}/console/events/acme%3Aghost-track-0")
    assert HOSTILE in page.locator("pre.line").inner_text()
    assert page.locator("main script").count() == 0
    assert dialogs == []


def test_the_screenshots_script_writes_each_page(browser: Browser, tmp_path: Path) -> None:
    written = main(tmp_path, browser)
    assert {path.name for path in written} == {
        f"{name}-{width}.png" for name in PAGES for width in ("desktop", "phone")
    }
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG"), path
