"""Pieces shared by several test modules: a tiny seeded CNN and the app served on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch
from torch import nn

READY_TIMEOUT_S = 60.0


class TinyNet(nn.Module):
    """A seeded small CNN with a GAP + linear head; `dead` channels of its target layer "features.4" are always 0."""

    def __init__(self, dead: int = 0, classes: int = 10) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.fc = nn.Linear(16, classes)
        with torch.no_grad():
            self.features[3].bias[:dead] = -1e3
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((-2, -1)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(url: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll the page until it answers 200, up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the app at {url} did not answer within {timeout:.0f} s")


@contextmanager
def served_app(fixtures_dir: Path) -> Iterator[str]:
    """The app launched on 127.0.0.1 (a free port) with the fixture photos as galleries; yields its URL."""
    import app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEACHING_GALLERY_DIR", str(fixtures_dir / "species"))
        mp.setenv("TEACHING_CACHE_DIR", tempfile.mkdtemp(prefix="teaching-cache-"))  # the model's verdicts
        demo = app.build_demo()
        try:
            _, url, _ = demo.launch(
                server_name="127.0.0.1",
                server_port=free_port(),
                prevent_thread_lock=True,
                quiet=True,
                **app.launch_options(),
            )
            wait_until_ready(url)
            yield url
        finally:
            demo.close()


SERVE = (
    "import sys, app; app.build_demo().launch(server_name='127.0.0.1', server_port=int(sys.argv[1]), "
    "quiet=True, **app.launch_options())"
)


@contextmanager
def served_app_process(fixtures_dir: Path) -> Iterator[str]:
    """The app in a process of its own on 127.0.0.1 (a free port), killed at the end; yields its URL.

    For tests that leave a request running (a cancelled Score-CAM computes on in its worker thread): in the test's
    own process such a thread would still be inside torch when the interpreter exits, which aborts it.
    """
    port = free_port()
    env = {
        **os.environ,
        "TEACHING_GALLERY_DIR": str(fixtures_dir / "species"),
        "TEACHING_CACHE_DIR": tempfile.mkdtemp(prefix="teaching-cache-"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], cwd=repo, env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_ready(url, timeout=3 * READY_TIMEOUT_S)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)
