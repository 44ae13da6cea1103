"""Shared test settings: where the real photos are, and seeded tiny inputs."""

from __future__ import annotations

import os
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
