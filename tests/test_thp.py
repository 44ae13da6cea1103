"""The command line and the benchmark put large CPU tensors on transparent huge pages unless told otherwise.

The app does not: its requests allocate little that is that large, and under load its resident set settled about
50 MB higher with huge pages (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("preset", [None, "0"])
@pytest.mark.parametrize("entry", ["teaching.__main__", "bench.bench_cams"])
def test_huge_pages_are_asked_for_before_torch_allocates(entry: str, preset: str | None) -> None:
    """The flag must be in the environment before torch's first allocation; a user's own setting stands."""
    source = (REPO / Path(*entry.split("."))).with_suffix(".py").read_text()
    head = source[: source.index("import torch")] if "import torch" in source else source
    assert 'os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")' in head  # before torch is imported
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    run = f"runpy.run_module({entry!r}, run_name='__main__')"
    code = (
        "import os, runpy, sys; sys.argv = ['x', '--help']\n"
        f"try:\n    {run}\nexcept SystemExit:\n    pass\n"
        "print('THP=' + os.environ.get('THP_MEM_ALLOC_ENABLE', ''))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert f"THP={preset or '1'}" in out.stdout, out.stderr[-500:]


def _huge_mb(flag: str) -> float:
    """AnonHugePages (MB) of a fresh process right after it allocates 200 MB with torch under THP_MEM_ALLOC_ENABLE."""
    code = (
        "import torch\n"
        "a = torch.ones(50_000_000)\n"
        "line = [l for l in open('/proc/self/smaps_rollup') if l.startswith('AnonHugePages')][0]\n"
        "print(int(line.split()[1]) / 1024)"
    )
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": flag}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return float(out.stdout.strip())


def test_torch_puts_large_tensors_on_huge_pages_with_the_flag() -> None:
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not Path("/proc/self/smaps_rollup").exists() or not mode.exists() or "[never]" in mode.read_text():
        pytest.skip("no transparent huge pages on this machine")
    assert _huge_mb("1") >= 150  # of the 200 MB tensor
    assert _huge_mb("0") < _huge_mb("1")
