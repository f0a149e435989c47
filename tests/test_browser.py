"""The preview gallery in a real browser: headless Chromium, driven by Playwright.

Chromium comes from Debian (``apt-get install chromium chromium-driver``; .ci/run installs
it); Playwright's own browser download is never used. Without Chromium this test FAILS: a
gallery nobody has seen rendered is not tested.

The run leaves screenshots in ``test-artifacts/`` at the repository root (git-ignored).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from invitemail.campaign import Campaign
from invitemail.outputs.gallery import INDEX, GalleryWriter

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "djoef-webinar"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-default-apps", "--disable-extensions"]
NOW = dt.datetime(2031, 12, 1, 9, 0, tzinfo=dt.UTC)  # the example's event is in the future

# The Danish registrant of the example with a personal Zoom link (registrants.csv line 2).
ADDRESS = "soren.aero@example.org"
PERSONAL_LINK = "https://zoom.us/w/84212345678?tk=EXAMPLE-personal-token-Soeren.DQMAAAAB"
DANISH_DATE = "torsdag den 11. december 2031"
PASSWORD = "Kx7pQ9"
ALLOWED_SCHEMES = {"file", "about", "data"}


def require_chromium() -> str:
    found = shutil.which(CHROMIUM)
    if found is None:
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run "
                    "`apt-get install chromium chromium-driver` (CI's .ci/run does)")
    return found


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gallery")
    campaign = Campaign.open(EXAMPLE, now=NOW)
    with GalleryWriter(out, None, title="Persondata i praksis: invitation",
                       zone=campaign.config.event.zone) as writer:
        report = campaign.check(on_message=writer)
    assert report.ok, report.problems
    return out


class Watch:
    """Every request the browser made and every console error it reported."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []

    def remote(self) -> list[str]:
        return [url for url in self.requests if urlsplit(url).scheme not in ALLOWED_SCHEMES]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_chromium()
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=CHROMIUM_ARGS, timeout=30_000)
        yield instance
        instance.close()


def open_page(browser: Browser, watch: Watch, *, dark: bool = False) -> Page:
    context = browser.new_context(viewport={"width": 1000, "height": 900},
                                  color_scheme="dark" if dark else "light")
    context.set_default_timeout(15_000)
    context.on("request", lambda request: watch.requests.append(request.url))
    page = context.new_page()
    page.on("console", lambda message: watch.errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    page.on("requestfailed", lambda request: watch.errors.append(
        f"request failed: {request.url}"))
    return page


def test_browser_gallery_shows_a_danish_invitation(browser: Browser, gallery: Path) -> None:
    watch = Watch()
    page = open_page(browser, watch)
    page.goto((gallery / INDEX).as_uri())
    rows = page.locator("#messages tbody tr")
    expect(rows).to_have_count(19)
    expect(page.locator("#shown")).to_have_text("19 of 19 shown")

    # Find the registrant with the filter box, as a coordinator would.
    page.locator("#filter").press_sequentially("soren.aero")
    expect(page.locator("#shown")).to_have_text("1 of 19 shown")
    visible = page.locator("#messages tbody tr:not([hidden])")
    expect(visible).to_have_count(1)
    expect(visible.locator("td").nth(3)).to_have_text("da")
    visible.get_by_role("link", name=ADDRESS).click()
    page.wait_for_load_state("load")
    assert page.url.endswith("00001-soren.aero%40example.org.html")

    frame_element = page.locator("iframe#message")
    assert "allow-scripts" not in (frame_element.get_attribute("sandbox") or "x")
    message = page.frame_locator("iframe#message")
    # (The preheader holds the date too, hidden as mail clients hide it: skip it.)
    expect(message.get_by_text(DANISH_DATE).filter(visible=True).first).to_be_visible()
    expect(message.get_by_text(PASSWORD, exact=True)).to_be_visible()
    link = message.locator(f'a[href="{PERSONAL_LINK}"]').first
    expect(link).to_be_visible()
    expect(link).to_have_text(PERSONAL_LINK)
    # The whole message shows (the iframe took its content's height), ending with the sender.
    box = frame_element.bounding_box()
    assert box is not None and box["height"] > 1200, box
    # The calendar event beside it, read from the message's text/calendar part.
    expect(page.locator("dd.event-local-time")).to_have_text(
        "Thu 2031-12-11 14:00–15:00 Europe/Copenhagen (13:00 UTC)")
    expect(page.locator("dd.event-join-link")).to_have_text(PERSONAL_LINK)

    ARTIFACTS.mkdir(exist_ok=True)
    frame_element.screenshot(path=str(ARTIFACTS / "gallery-danish-invitation.png"))
    page.screenshot(path=str(ARTIFACTS / "gallery-danish-invitation-page.png"), full_page=True)
    page.context.close()

    assert watch.errors == []
    assert watch.remote() == [], "the gallery made network requests"
    assert any(url.startswith("file://") for url in watch.requests)


def test_browser_invitation_is_readable_in_dark_mode(browser: Browser, gallery: Path) -> None:
    watch = Watch()
    page = open_page(browser, watch, dark=True)
    page.goto((gallery / "00001-soren.aero@example.org.html").as_uri())
    message = page.frame_locator("iframe#message")
    expect(message.get_by_text(PASSWORD, exact=True)).to_be_visible()
    card = message.locator(".im-card")
    # The dark-mode block of the message's <style> (kept by the CSS inliner) applies.
    assert card.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(31, 35, 40)"
    assert message.locator("h1").evaluate("e => getComputedStyle(e).color") == \
        "rgb(230, 232, 235)"
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("iframe#message").screenshot(
        path=str(ARTIFACTS / "gallery-danish-invitation-dark.png"))
    page.context.close()
    assert watch.errors == []
    assert watch.remote() == []
