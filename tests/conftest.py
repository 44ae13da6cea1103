"""Shared test settings: where the real photos are, and seeded tiny inputs."""

from __future__ import annotations

import os
import socket
import urllib.error
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def fixtures_path() -> Path:
    """The folder of real photos: env TEACHING_FIXTURES, default ../shared/fixtures beside the repo."""
    return Path(os.environ.get("TEACHING_FIXTURES", REPO.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real-photo folder; skips (or fails when TEACHING_REQUIRE_FIXTURES=1) when it is missing."""
    path = fixtures_path()
    if not (path / "species").is_dir():
        message = f"real photos not found at {path} (set TEACHING_FIXTURES)"
        if os.environ.get("TEACHING_REQUIRE_FIXTURES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def local_gallery(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Gallery photos from the fixture folder (photos the project never trained on, one folder per species), as the
    app's tests set it; the model's verdicts cached in a temp folder shared by the session."""
    monkeypatch.setenv("TEACHING_GALLERY_DIR", str(fixtures_dir / "species"))
    monkeypatch.setenv("TEACHING_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    return fixtures_dir / "species"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No cached weights and no network: every download attempt fails at once (and nothing is downloaded)."""
    import huggingface_hub.constants
    import torch

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    def refuse_socket(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse_socket)
    monkeypatch.setattr(socket.socket, "connect", refuse_socket)
