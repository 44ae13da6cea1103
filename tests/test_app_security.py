"""The app on 127.0.0.1 refuses raw payloads that name server files, with one answer whatever is there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import served_app

from teaching.service import NOT_AVAILABLE

AFRICAN = "African_elephant/eli_n02504458_African_elephant.JPEG"


@pytest.fixture(scope="module")
def url(fixtures_dir: Path) -> Iterator[str]:
    with served_app(fixtures_dir) as served:
        yield served


def call(url: str, endpoint: str, data: list[object]) -> str:
    """POST the raw payload (no "meta": Gradio's upload check is skipped) and read the event's answer."""
    event = httpx.post(f"{url}gradio_api/call/{endpoint}", json={"data": data}, timeout=30).json()["event_id"]
    return httpx.get(f"{url}gradio_api/call/{endpoint}/{event}", timeout=120).text


@pytest.mark.parametrize("endpoint", ["explore", "compare"])
def test_server_paths_get_one_refusal(url: str, endpoint: str, fixtures_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "photo.jpg"
    outside.write_bytes((fixtures_dir / "species" / AFRICAN).read_bytes())  # an existing photo outside
    answers = []
    for path in [outside, tmp_path / "missing.png", tmp_path, "/proc/self/environ"]:
        photo = {"path": str(path)}
        rest: list[object] = ["elephants", "gradcam", "efficientnet_lite0"]
        if endpoint == "compare":
            rest = [["gradcam"], ["efficientnet_lite0"]]
        text = call(url, endpoint, [photo, *rest])
        assert "event: error" in text, text
        answers.append(text.split("data:", 1)[1].strip())
    assert len(set(answers)) == 1 and NOT_AVAILABLE in answers[0], answers


def test_a_gallery_photo_is_allowed(url: str, fixtures_dir: Path) -> None:
    text = call(
        url,
        "explore",
        [{"path": str(fixtures_dir / "species" / AFRICAN)}, "elephants", "gradcam", "efficientnet_lite0"],
    )
    assert "event: complete" in text, text


def test_compare_with_nothing_ticked_answers_at_once(url: str, fixtures_dir: Path) -> None:
    text = call(url, "compare", [{"path": str(fixtures_dir / "species" / AFRICAN)}, [], ["efficientnet_lite0"]])
    assert "event: error" in text and "tick at least one method" in text, text
