"""The app served on 127.0.0.1 and driven through its named endpoints with gradio_client, as a program would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from helpers import served_app
from PIL import Image

import app
from teaching import render, service

AFRICAN = "species/African_elephant/eli_n02504458_African_elephant.JPEG"

pytestmark = pytest.mark.fixtures


@pytest.fixture(scope="module")
def client(fixtures_dir: Path) -> Iterator[Client]:
    with served_app(fixtures_dir) as url:
        c = Client(url, verbose=False)
        try:
            yield c
        finally:
            c.close()


def test_named_endpoints(client: Client) -> None:
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(endpoints) == {
        "/explore",
        "/gallery",
        "/groups",
        "/compare",
        "/start_quiz",
        "/quiz_answer",
        "/quiz_next",
    }
    params = [p["parameter_name"] for p in endpoints["/explore"]["parameters"]]
    assert params == ["image", "group_id", "method", "backbone"]
    assert [p["parameter_has_default"] for p in endpoints["/explore"]["parameters"]] == [False, True, True, True]


def test_explore_returns_the_grid_and_the_predictions(client: Client, fixtures_dir: Path) -> None:
    grid, labels, note = client.predict(handle_file(fixtures_dir / AFRICAN), "elephants", api_name="/explore")
    with Image.open(grid) as img:
        columns = 3
        assert img.width == render.PAD + service.CELL // 2 + render.PAD + columns * (service.CELL + render.PAD)
        assert img.format == "JPEG"  # shown as JPEG; the PNG is made on the download button's click
    assert labels["label"] == "African elephant"
    confidences = {c["label"]: c["confidence"] for c in labels["confidences"]}
    assert len(confidences) == service.TOP_N
    assert confidences["African elephant"] == pytest.approx(0.9997, abs=2e-4)
    assert 0.95 < sum(confidences.values()) <= 1.0
    assert note == "The model says African elephant (>99.9%)."


def test_groups_for_assistants(client: Client) -> None:
    groups = client.predict(api_name="/groups")
    assert [g["id"] for g in groups] == list(service.groups())
    elephants = groups[[g["id"] for g in groups].index("elephants")]
    assert [s["name"] for s in elephants["species"]] == ["African elephant", "Asian elephant", "tusker"]
    assert elephants["species"][0]["traits"][0].startswith("Huge ears")


def test_tools_for_assistants(client: Client) -> None:
    """With the gradio[mcp] extra installed the app is an MCP server: "explain this photo" and "list the groups"."""
    pytest.importorskip("mcp")
    tools = {t["name"]: t["description"] for t in httpx.get(f"{client.src}gradio_api/mcp/schema", timeout=30).json()}
    assert {"explore", "list_groups"} <= set(tools)
    assert "one English sentence on what the model says" in tools["explore"]
    assert '"id" (pass it to /explore as group_id)' in tools["list_groups"]


def test_the_page_clears_the_result_on_a_bad_upload(fixtures_dir: Path, tmp_path: Path) -> None:
    """A bad photo gives empty cards, an empty top-5 and one message; no exception (no error badges)."""
    upload = Path(gr.utils.get_upload_folder()) / f"test-{tmp_path.name}"  # where Gradio keeps uploads
    upload.mkdir(parents=True, exist_ok=True)
    text = upload / "notes.png"
    text.write_text("these are not pixels\n")
    cards, top5, note, grid = app.explore_page(
        {"path": str(text)}, "elephants", "gradcam", "efficientnet_lite0", "en", None, lambda *a, **k: None
    )
    assert (cards, top5.value, grid) == ("", {}, None)  # an empty Label
    assert note == "**notes.png: not an image file (JPEG, PNG, WebP, GIF, BMP or TIFF expected)**"


def test_the_page_in_chinese_names_the_species_and_the_photo(fixtures_dir: Path) -> None:
    photo = {"path": str(fixtures_dir / AFRICAN)}
    cards, top5, note, grid = app.explore_page(
        photo, "elephants", "gradcam", "efficientnet_lite0", "zh", "african_elephant", lambda *a, **k: None
    )
    assert note == "模型认为这是非洲象（>99.9%）。"
    assert "这张图库照片是非洲象。模型的判断正确。" in cards
    assert cards.count('class="card"') == 3 and "亚洲象" in cards and "长牙象" in cards
    assert "耳朵巨大，形状大致像非洲地图，一直垂到脖子以下。" in cards  # the traits are text, not pixels
    assert list(top5)[:2] == ["非洲象 (African elephant)", "长牙象 (tusker)"]
    assert "Indian elephant" not in cards  # the cards name the species in Chinese only (ImageNet's names are English)
    assert grid.size[0] > 3 * service.CELL  # the PNG grid for the download stays


def test_the_quiz_seed_line_in_chinese(client: Client) -> None:
    import app_quiz

    status = app_quiz.start_quiz("elephants", 1, 1, "7", "zh")[1]
    assert status.startswith("**教学：第 1 张，共 1 张**") and "测验种子：7（同一个种子给全班同样的测试照片）" in status


def test_the_labels_and_the_switch_in_both_languages() -> None:
    """Every label has both languages; the methods and Compare's note come from the service's one table; the
    switch sends the tabs again, so Gradio translates their names in the new locale."""
    import app_page

    t = app_page.translations()
    assert set(t) == {"en", "zh-CN", "zh"} and set(t["en"]) == set(t["zh-CN"]) and t["zh"] is t["zh-CN"]
    assert t["zh"]["sanity_note"] == service.say("sanity_note", "zh") and t["en"]["sanity_note"] == service.SANITY_NOTE
    assert (t["en"]["method.gradcam"], t["zh"]["method.gradcam"]) == ("Grad-CAM", "Grad-CAM")
    if not torch.cuda.is_available():
        assert t["zh"]["method.scorecam"] == "Score-CAM（没有 GPU 时较慢）"
    lang, switch, _, _, *tabs, redraw = app.page_language("zh-CN", {"group": "sharks"})
    assert (lang, switch, redraw) == ("zh", "zh", True)  # the switch: Gradio's upload areas are drawn again
    assert app.page_language("zh-CN", None, "zh-CN")[-1] is False  # a Chinese browser's page is drawn in Chinese
    assert app.page_language("en", None, "zh-CN")[-1] is True  # English kept in a Chinese browser
    assert [str(tab["label"]) for tab in tabs] == [str(app.T(k)) for k in ("explore", "compare", "quiz")]
    assert app_page.LANG_KEY in app_page.SWITCH_JS and "changeLocale" in app_page.SWITCH_JS
    assert "changeLocale" in app_page.LOCALE_JS


def test_every_group_loads(client: Client) -> None:
    for group_id, group in service.groups().items():
        photos, credits, missing = client.predict(group_id, api_name="/gallery")
        assert photos, group_id
        assert all(Path(p["image"]).is_file() for p in photos)
        species = {s.name for s in group.species}
        assert {p["caption"].split(". ")[0] for p in photos} <= species
        assert len(credits.splitlines()) == len(photos)
        assert missing == ""


def test_bad_uploads_give_a_short_error_and_the_app_goes_on(client: Client, fixtures_dir: Path, tmp_path: Path) -> None:
    upload = Path(gr.utils.get_upload_folder()) / f"test-{tmp_path.name}"  # where Gradio keeps uploads
    upload.mkdir(parents=True, exist_ok=True)
    text = upload / "notes.png"
    text.write_text("these are not pixels\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match=r"notes\.png: not an image file \(JPEG, PNG, WebP, GIF, BMP or TIFF expected\)"):
        client.predict(handle_file(text), "elephants", api_name="/explore")
    _, labels, _ = client.predict(handle_file(fixtures_dir / AFRICAN), "sharks", api_name="/explore")
    assert labels["label"] == "African elephant"
    with pytest.raises(AppError, match=r"empty\.png: empty file \(0 bytes\)"):
        client.predict(handle_file(empty), "elephants", api_name="/explore")
    with pytest.raises(AppError, match="unknown species group 'cats'"):
        client.predict(handle_file(fixtures_dir / AFRICAN), "cats", api_name="/explore")
    _, _, note = client.predict(handle_file(fixtures_dir / AFRICAN), "sharks", api_name="/explore")
    assert note.startswith("The model does not see any of the sharks here: its best guess is African elephant")
    assert note.endswith(f"*{service.get_group('sharks').caveat}*")  # the group's measured limit, with every map


def test_upload_size_limit(client: Client, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (service.MAX_UPLOAD_BYTES + 1))
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {service.MAX_UPLOAD_BYTES} bytes"):
        client.predict(handle_file(big), "elephants", api_name="/explore")  # the client reads the server's limit
    with big.open("rb") as f:
        response = httpx.post(f"{client.src}gradio_api/upload", files={"files": ("big.png", f)}, timeout=30.0)
    assert response.status_code == 413
    assert "File size exceeded maximum allowed size" in response.text


def test_compare(client: Client, fixtures_dir: Path) -> None:
    matrix = client.predict(
        handle_file(fixtures_dir / AFRICAN), ["gradcam"], ["efficientnet_lite0"], api_name="/compare"
    )
    with Image.open(matrix) as img:
        cell = service.COMPARE_CELL
        assert img.width == render.PAD + cell // 2 + render.PAD + 2 * (cell + render.PAD)  # the photo and one method
        assert img.format == "JPEG"


def test_the_png_download_is_the_grid_shown_made_on_demand() -> None:
    grid = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    with Image.open(app.grid_png(grid, "explore")) as png:
        assert png.format == "PNG" and np.array_equal(np.asarray(png), np.asarray(grid))  # lossless
    with pytest.raises(gr.Error, match="Nothing to download yet"):
        app.grid_png(None, "explore")


def test_quiz_through_the_api(client: Client) -> None:
    progress, photo, choice, feedback, explanation, score, timer = client.predict(
        "elephants", 1, 1, api_name="/start_quiz"
    )
    assert progress.startswith("**Teaching: photo 1 of 1**\n\nQuiz seed: ")
    assert Path(photo["value"]).is_file()
    again = client.predict(None, api_name="/quiz_answer")  # Answer with nothing chosen: the question stays
    assert again[0].startswith("**Teaching: photo 1 of 1** Choose a species first, then press Answer.")
    assert again[1]["value"] == photo["value"]
    assert [c[1] for c in choice["choices"]] == ["african_elephant", "asian_elephant", "tusker"]
    assert feedback == "" and not explanation["visible"] and not timer["active"]
    progress, photo, choice, feedback, explanation, score, timer = client.predict("tusker", api_name="/quiz_answer")
    assert feedback.startswith(("### Correct, it is", "### Wrong, it is"))
    assert explanation["visible"] and Path(explanation["value"]).is_file()
    assert timer["active"] and not choice["interactive"] and choice["value"] == "tusker"  # the guess stays shown
