"""Screenshots of each console page, for the README (DELIVERY §8).

    .venv/bin/python tests/console_screenshots.py docs/console

serves a sandbox and a service with a console in this process, sends a few events (some
delivered, tracks of a user User.com does not know yet, rejected), and drives the
distribution's Chromium through the pages at desktop and phone width. tests/
test_console_browser.py runs it into a temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))

from console_helpers import HOSTILE, TOKEN, console_options
from serve_helpers import (
    API_KEY,
    identify,
    ledger_counts,
    post,
    service_in_thread,
    track,
    wait_until,
)

from pipeline.sandbox import SandboxOptions, serve_in_thread

CHROMIUM = "/usr/bin/chromium"
DESKTOP = ViewportSize(width=1100, height=800)
PHONE = ViewportSize(width=390, height=844)
PAGES = ("signin", "overview", "failures", "event", "user")


def launch(playwright: object) -> Browser:
    """The distribution's Chromium (never a downloaded one: `playwright install` is not run)."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(
            f"no {CHROMIUM}: install the distribution's browser (apt-get install -y chromium; "
            ".ci/run does it where it is missing)"
        )
    chromium = getattr(playwright, "chromium")  # noqa: B009 - the sync API's typed attribute
    browser: Browser = chromium.launch(executable_path=CHROMIUM)
    return browser


def sign_in(page: Page, url: str, token: str = TOKEN) -> None:
    page.goto(f"{url}/console/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()


@contextmanager
def demo_service(folder: Path) -> Iterator[str]:
    """A service with a console in front of a sandbox, holding a few delivered and a few
    rejected events; its URL."""
    with (
        serve_in_thread(SandboxOptions(api_key=API_KEY)) as sandbox,
        service_in_thread(console_options(folder / "serve.sqlite", sandbox)) as service,
    ):
        events = [identify("ada"), *(track("ada", n) for n in range(3))]
        events += [track("ghost", n, properties={"note": HOSTILE}) for n in range(4)]
        assert post(service.url, "/v1/batch", {"batch": events}).status_code == 200
        assert wait_until(lambda: ledger_counts(folder / "serve.sqlite").get("rejected") == 4)
        yield service.url


def shoot(browser: Browser, url: str, out: Path) -> list[Path]:
    """One PNG per page and width in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for width, size in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=size, java_script_enabled=False)
        page = context.new_page()
        page.goto(f"{url}/console/")
        written.append(out / f"signin-{width}.png")
        page.screenshot(path=written[-1], full_page=True)
        sign_in(page, url)
        paths = {
            "overview": "/console/",
            "failures": "/console/failures",
            "event": "/console/events/acme%3Aghost-track-0",
            "user": "/console/users/acme/ghost",
        }
        for name, path in paths.items():
            page.goto(f"{url}{path}")
            written.append(out / f"{name}-{width}.png")
            page.screenshot(path=written[-1], full_page=True)
        context.close()
    return written


def main(out: Path, browser: Browser | None = None) -> list[Path]:
    """Serve the demo and shoot its pages into `out`, with `browser` (else one launched)."""
    with (
        tempfile.TemporaryDirectory(prefix="usercom-shots-") as folder,
        demo_service(Path(folder)) as url,
    ):
        if browser is not None:
            return shoot(browser, url, out)
        with sync_playwright() as playwright:
            launched = launch(playwright)
            try:
                return shoot(launched, url, out)
            finally:
                launched.close()


if __name__ == "__main__":
    for path in main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console")):
        print(path)
