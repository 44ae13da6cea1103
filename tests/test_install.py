"""The README's install command installs the package: `teaching` works from any folder; the Space still builds.

requirements.txt ends with `-e .`, which only works where the repository is present when the file is installed: a
`sdk: gradio` Space installs the file alone, so the Space is a Docker Space whose Dockerfile copies the package first.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env_without_repo() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # pytest's pythonpath setting is not inherited, but a user's may be
    return env


def test_requirements_install_the_package() -> None:
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    assert "-e ." in lines


def test_teaching_command_works_from_any_folder(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "teaching"
    assert script.is_file(), "no `teaching` command: install with pip install -r requirements.txt (it ends with -e .)"
    out = subprocess.run(
        [str(script), "--help"], cwd=tmp_path, env=_env_without_repo(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for command in ("explain", "backbones", "evaluate", "simulate"):
        assert command in out.stdout
    module = subprocess.run(
        [sys.executable, "-m", "teaching", "backbones"],
        cwd=tmp_path,
        env=_env_without_repo(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert module.returncode == 0, module.stderr
    assert "efficientnet_lite0" in module.stdout


def test_space_is_a_docker_space_that_copies_the_package_before_installing() -> None:
    front = (ROOT / "README.md").read_text().split("---")[1]
    fields = dict(re.findall(r"^(\w+):\s*(.+)$", front, re.M))
    assert fields["sdk"] == "docker" and fields["app_port"] == "7860"
    steps = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln and not ln.startswith("#")]
    install = next(i for i, ln in enumerate(steps) if "pip install -r requirements.txt" in ln)
    copied = " ".join(ln for ln in steps[:install] if ln.startswith("COPY"))
    assert "pyproject.toml" in copied and "teaching" in copied and "requirements.txt" in copied
    assert steps[-1] == 'CMD ["python", "app.py"]'
