"""The learner's page in chromium (Playwright, 127.0.0.1): both languages, a phone and a desktop width, the cancel
of a slow job, a reload in the middle of a quiz, and no toolbar over the species names.

Skips like tests/test_browser.py without /usr/bin/chromium; screenshots go to TEACHING_SCREENSHOTS (or tmp_path).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import served_app_process
from test_browser import CHROMIUM, CHROMIUM_ARGS, STEP_TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.fixtures]
ELEPHANT = "species/African_elephant/eli_n02504458_African_elephant.JPEG"
TOOLBAR = "button[aria-label='Download'], button[aria-label='Fullscreen'], button[aria-label='Share'], .icon-button"


@pytest.fixture(scope="module")
def url(fixtures_dir: Path) -> Iterator[str]:
    if not CHROMIUM.is_file():
        if os.environ.get("TEACHING_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} not found")
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    with served_app_process(fixtures_dir) as address:  # the cancelled job must not outlive this process
        yield address


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TEACHING_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser: Any, url: str, locale: str, width: int) -> Any:
    from playwright.sync_api import expect

    context = browser.new_context(locale=locale, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    page.goto(url)
    expect(page.locator("#gallery img").first).to_be_visible()
    return page


def explain_upload(page: Any, photo: Path) -> None:
    from playwright.sync_api import expect

    page.locator("#photo input[type=file]").set_input_files(str(photo))
    page.locator("#explain").click()
    expect(page.locator("#cards .card")).to_have_count(3)


def no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


@pytest.mark.parametrize(("locale", "width"), [("en-US", 1400), ("zh-CN", 390)])
def test_cards_in_both_languages_and_widths(
    browser: Any, url: str, fixtures_dir: Path, screenshots: Path, locale: str, width: int
) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, url, locale, width)
    try:
        explain_upload(page, fixtures_dir / ELEPHANT)
        names = page.locator("#cards .card h3")
        if locale == "zh-CN":
            expect(names.nth(0)).to_contain_text("非洲象")
            expect(names.nth(1)).to_contain_text("亚洲象")
            expect(page.locator("#note")).to_contain_text("模型认为这是非洲象（>99.9%）。")
            expect(page.get_by_role("button", name="解释", exact=True)).to_be_visible()  # the labels too
        else:
            expect(names.nth(0)).to_contain_text("African elephant")
            expect(names.nth(1)).to_contain_text("Asian elephant (Indian elephant)")
            # the traits are text of the page (selectable, translatable, read aloud), not pixels of an image
            expect(page.locator("#cards li").first).to_have_text(
                "Huge ears, shaped roughly like the map of Africa, that reach down below the neck."
            )
        boxes = [names.nth(i).bounding_box() for i in range(3)]
        if width <= 400:  # one column on a phone, several on a desktop
            assert len({round(b["x"]) for b in boxes}) == 1
        else:
            assert len({round(b["x"]) for b in boxes}) >= 2
        toolbars = [t.bounding_box() for t in page.locator(TOOLBAR).all() if t.is_visible()]
        assert not any(overlaps(t, n) for t in toolbars for n in boxes if t and n)
        assert no_sideways_scroll(page)
        page.screenshot(path=screenshots / f"cards-{locale}-{width}.png", full_page=True)
    finally:
        page.context.close()


def test_a_gallery_photo_says_what_it_is(browser: Any, url: str) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, url, "en-US", 1400)
    try:
        page.locator("#gallery img").first.click()  # the first photo of the first species: an African elephant
        page.locator("#explain").click()
        expect(page.locator("#cards .photo-note")).to_contain_text("This gallery photo shows an African elephant.")
    finally:
        page.context.close()


def test_cancel_a_slow_job(browser: Any, url: str, fixtures_dir: Path) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, url, "en-US", 1400)
    try:
        page.locator("#photo input[type=file]").set_input_files(str(fixtures_dir / ELEPHANT))
        page.locator("#method input").click()
        page.get_by_role("option", name="Score-CAM").click()
        page.locator("#explain").click()
        expect(page.locator("#cards .progress-text, #note .progress-text").first).to_be_visible()
        page.locator("#cancel-explore").click()
        expect(page.locator("#cards .progress-text, #note .progress-text")).to_have_count(0, timeout=15_000)
        expect(page.locator("#cards .card")).to_have_count(0)
    finally:
        page.context.close()


def test_reload_in_the_middle_of_a_quiz(browser: Any, url: str, screenshots: Path) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, url, "en-US", 390)
    try:
        page.get_by_role("tab", name="Quiz").click()
        page.get_by_role("button", name="Start the quiz", exact=True).click()
        expect(page.locator("#quiz-status")).to_contain_text("Teaching: photo 1 of 6")  # then the quiz seed
        page.get_by_role("radio", name="tusker").check()
        page.get_by_role("button", name="Answer", exact=True).click()
        next_button = page.get_by_role("button", name="Next", exact=True)
        expect(next_button).to_be_enabled(timeout=15_000)
        next_button.click()
        expect(page.locator("#quiz-status")).to_have_text("Teaching: photo 2 of 6")
        page.reload()
        page.get_by_role("tab", name="Quiz").click()
        expect(page.locator("#quiz-status")).to_have_text("Teaching: photo 2 of 6")  # kept in the browser
        expect(page.locator("#quiz-photo img")).to_be_visible()
        assert no_sideways_scroll(page)
        page.screenshot(path=screenshots / "quiz-after-reload-390.png", full_page=True)
    finally:
        page.context.close()


def test_the_language_switch(browser: Any, url: str, fixtures_dir: Path, screenshots: Path) -> None:
    """In an en-US browser the switch turns the sentences, names and traits to Chinese, and Gradio's own labels
    (tab names, buttons, dropdowns) too; the choice survives a reload."""
    from playwright.sync_api import expect

    page = open_page(browser, url, "en-US", 390)
    try:
        expect(page.get_by_role("tab", name="Explore", exact=True)).to_be_visible()
        page.get_by_role("radio", name="中文").check()
        expect(page.locator("#lang input[value=zh]")).to_be_checked()
        tabs = page.get_by_role("tab")
        expect(tabs).to_have_text(["探索", "比较", "测验"])
        expect(page.get_by_role("button", name="解释", exact=True)).to_be_visible()
        expect(page.locator("#group label, #group span").filter(has_text="物种组").first).to_be_visible()
        expect(page.locator("#photo")).to_contain_text("点击上传")  # the upload area drawn again in Chinese
        explain_upload(page, fixtures_dir / ELEPHANT)
        expect(page.locator("#cards .card h3").nth(1)).to_contain_text("亚洲象")
        page.reload()  # the choice is kept in the browser
        expect(page.locator("#lang input[value=zh]")).to_be_checked()
        expect(tabs).to_have_text(["探索", "比较", "测验"])
        expect(page.get_by_role("button", name="解释", exact=True)).to_be_visible()
        expect(page.locator("#photo")).to_contain_text("点击上传")  # Gradio's own words of the upload area
        assert page.locator("#title").bounding_box()["width"] >= 300  # the switch goes under the title on a phone
        assert no_sideways_scroll(page)
        page.screenshot(path=screenshots / "switched-zh-390.png", full_page=True)
        page.get_by_role("radio", name="English").check()  # and back
        expect(tabs).to_have_text(["Explore", "Compare", "Quiz"])
        expect(page.get_by_role("button", name="Explain", exact=True)).to_be_visible()
    finally:
        page.context.close()


def test_compare_and_the_credits_in_chinese(browser: Any, url: str, fixtures_dir: Path, screenshots: Path) -> None:
    """In zh-CN the gallery's credits, Compare's note, its method names and the matrix's caption are Chinese."""
    from playwright.sync_api import expect

    page = open_page(browser, url, "zh-CN", 1400)
    try:
        page.get_by_role("button", name="照片来源").click()
        expect(page.locator("#credits li").first).to_contain_text("非洲象：")
        page.get_by_role("tab", name="比较", exact=True).click()
        expect(page.locator("#sanity-note")).to_contain_text("没有通过模型随机化健全性检查")
        expect(page.get_by_text("Score-CAM（没有 GPU 时较慢）")).to_be_visible()
        page.locator("#photo-compare input[type=file]").set_input_files(str(fixtures_dir / ELEPHANT))
        page.locator("#compare").click()
        expect(page.locator("#matrix img")).to_be_visible(timeout=3 * STEP_TIMEOUT_MS)
        page.screenshot(path=screenshots / "compare-zh-CN-1400.png", full_page=True)
    finally:
        page.context.close()
