"""The app in a real browser: Debian's chromium driven by Playwright (upload, explain, quiz), with screenshots.

Skips when /usr/bin/chromium is missing, unless TEACHING_REQUIRE_BROWSER=1 (then it fails). Screenshots go to
TEACHING_SCREENSHOTS when set, else to the test's tmp_path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import served_app
from PIL import Image

from teaching import service

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
STEP_TIMEOUT_MS = 60_000  # the longest wait for one step (a CPU explain under load takes seconds)
AFRICAN = "species/African_elephant/eli_n02504458_African_elephant.JPEG"

pytestmark = [pytest.mark.browser, pytest.mark.fixtures]


@pytest.fixture(scope="module")
def url(fixtures_dir: Path) -> Iterator[str]:
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} not found (apt-get install -y chromium)"
        if os.environ.get("TEACHING_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with served_app(fixtures_dir) as address:
        yield address


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TEACHING_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_desktop_page(browser: Any, url: str) -> Any:
    """The page at 1400 x 1000, every step of the test bounded by STEP_TIMEOUT_MS."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(STEP_TIMEOUT_MS)
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    page.goto(url)
    return page


def test_explain_and_quiz_in_chromium(url: str, fixtures_dir: Path, screenshots: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = open_desktop_page(browser, url)
            expect(page.get_by_role("heading", name="Machine teaching with Grad-CAM")).to_be_visible()
            # the gallery of the first group is shown with its credits
            expect(page.locator("#gallery img").first).to_be_visible()

            page.locator("#gallery img").first.click()  # a gallery photo becomes the photo to explain
            expect(page.locator("#photo img")).to_be_visible()
            page.locator("#photo input[type=file]").set_input_files(str(fixtures_dir / AFRICAN))
            page.get_by_role("button", name="Explain", exact=True).click()
            expect(page.locator("#cards .card")).to_have_count(3)
            expect(page.get_by_text("The model says African elephant (>99.9%).")).to_be_visible()
            page.screenshot(path=screenshots / "explore.png", full_page=True)
            # the PNG is made when asked for, and the browser receives it as a download
            with page.expect_download() as download:
                page.get_by_role("button", name="Download the grid (PNG)").click()
            saved = screenshots / "downloaded-grid.png"
            download.value.save_as(saved)
            with Image.open(saved) as png:  # the grid with its text, for slides: one column per species
                assert png.format == "PNG" and png.width > 3 * service.CELL

            page.get_by_role("tab", name="Compare").click()
            expect(page.get_by_text("fail the model-randomisation sanity check")).to_be_visible()
            page.locator("#photo-compare input[type=file]").set_input_files(str(fixtures_dir / AFRICAN))
            page.get_by_role("checkbox", name="efficientnet_lite2").uncheck()  # one model is enough here
            page.get_by_role("button", name="Compare", exact=True).click()
            expect(page.locator("#matrix img")).to_be_visible(timeout=3 * STEP_TIMEOUT_MS)
            page.screenshot(path=screenshots / "compare.png", full_page=True)
            with page.expect_download() as download:
                page.get_by_role("button", name="Download the matrix (PNG)").click()
            assert download.value.suggested_filename.endswith(".png")

            page.get_by_role("tab", name="Quiz").click()
            page.get_by_role("button", name="Start the quiz", exact=True).click()
            expect(page.get_by_text("Teaching: photo 1 of 6")).to_be_visible()
            page.get_by_role("radio", name="tusker").check()
            page.get_by_role("button", name="Answer", exact=True).click()
            verdict = page.get_by_role("heading", name="Correct, it is").or_(
                page.get_by_role("heading", name="Wrong, it is")
            )
            expect(verdict).to_be_visible()
            expect(page.locator("#explanation img")).to_be_visible()
            next_button = page.get_by_role("button", name="Next", exact=True)
            expect(next_button).to_be_disabled()
            page.screenshot(path=screenshots / "quiz-feedback.png", full_page=True)
            expect(next_button).to_be_enabled(timeout=15_000)  # enabled once the 2 s pause has passed
            next_button.click()
            expect(page.get_by_text("Teaching: photo 2 of 6")).to_be_visible()
            page.screenshot(path=screenshots / "quiz-next.png", full_page=True)
        finally:
            browser.close()
    assert {p.name for p in screenshots.glob("*.png")} >= {
        "explore.png",
        "compare.png",
        "quiz-feedback.png",
        "quiz-next.png",
    }


def test_a_quiz_played_through_in_chromium(url: str, screenshots: Path) -> None:
    """Sharks, 2 teaching + 2 test photos: Answer is disabled until a species is chosen, an Answer with nothing
    chosen (forced through) leaves the question, the guess stays shown next to the feedback, then the score."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = open_desktop_page(browser, url)
            page.get_by_role("tab", name="Quiz").click()
            page.locator("input[aria-label='Species group']:visible").click()
            page.get_by_role("option", name="Sharks").click()
            for label in ("Teaching photos", "Test photos"):
                box = page.get_by_role("spinbutton", name=label)
                box.fill("2")
                box.press("Enter")
            page.get_by_role("button", name="Start the quiz", exact=True).click()
            expect(page.get_by_text("Teaching: photo 1 of 2")).to_be_visible()
            expect(page.get_by_text("Quiz seed:")).to_be_visible()
            answer = page.get_by_role("button", name="Answer", exact=True)
            expect(answer).to_be_disabled()
            answer.dispatch_event("click")  # a click that gets through anyway: the server keeps the question
            expect(page.get_by_text("Choose a species first, then press Answer.")).to_be_visible()
            expect(page.get_by_text("Teaching: photo 1 of 2")).to_be_visible()
            expect(page.get_by_text("Error")).to_have_count(0)
            for n in (1, 2):
                expect(page.get_by_text(f"Teaching: photo {n} of 2")).to_be_visible()  # Next's answer has come
                expect(page.get_by_role("radio", name="tiger shark")).not_to_be_checked()
                page.get_by_role("radio", name="tiger shark").check()
                expect(answer).to_be_enabled()
                answer.click()
                expect(page.locator("#explanation img")).to_be_visible()
                expect(page.get_by_role("radio", name="tiger shark")).to_be_checked()  # the guess stays shown
                if n == 1:
                    page.screenshot(path=screenshots / "quiz-played-feedback.png", full_page=True)
                next_button = page.get_by_role("button", name="Next", exact=True)
                expect(next_button).to_be_enabled(timeout=15_000)
                next_button.click()
            for n in (1, 2):
                expect(page.get_by_text(f"Test (no feedback): photo {n} of 2")).to_be_visible()
                page.get_by_role("radio", name="hammerhead").check()
                answer.click()
            expect(page.get_by_role("heading", name="Your score:")).to_be_visible()
            page.screenshot(path=screenshots / "quiz-played-score.png", full_page=True)
        finally:
            browser.close()
