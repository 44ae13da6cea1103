"""Every bad input answered right: the corpus (bench/corpus.py), the allow-list of photo paths, Compare's limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.corpus import CASES, write_corpus
from teaching import service
from teaching.errors import ImageError, TeachingError, echo
from teaching.service import NOT_AVAILABLE, allowed_photo, read_photo


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_library_answers_every_case(corpus: dict[str, Path], case) -> None:
    if case.expected is None:
        img = read_photo(corpus[case.name])
        assert img.mode == "RGB" and min(img.size) >= 8
        return
    with pytest.raises(ImageError) as info:
        read_photo(corpus[case.name])
    message = str(info.value)
    assert message.startswith(f"{case.name}: ") and case.expected in message and "\n" not in message
    assert "Plugin" not in message and "MAX_" not in message  # no internal names


def test_paths_outside_the_allowed_folders_get_one_answer(tmp_path: Path, corpus: dict[str, Path]) -> None:
    allowed = tmp_path / "cache"
    (allowed / "sub").mkdir(parents=True)
    good = allowed / "sub" / "noise.jpg"
    good.write_bytes(corpus["noise.jpg"].read_bytes())
    assert allowed_photo(str(good), [allowed]) == good.resolve()
    assert allowed_photo(None, [allowed]) is None
    (allowed / "escape.jpg").symlink_to(corpus["noise.jpg"])  # a link out of the folder
    refused = [
        corpus["noise.jpg"],  # an existing photo elsewhere
        tmp_path / "missing.jpg",
        tmp_path,  # a folder
        allowed,  # the folder itself
        allowed / "sub",
        allowed / "gone.jpg",
        allowed / ".." / "cache" / ".." / "escape.txt",
        allowed / "escape.jpg",
        "/proc/self/environ",
        "/etc/passwd",
        "bad\x00path",
    ]
    answers = set()
    for path in refused:
        with pytest.raises(ImageError) as info:
            allowed_photo(str(path), [allowed])
        answers.add(str(info.value))
    assert answers == {NOT_AVAILABLE}


def test_echo_cuts_long_input_in_the_middle() -> None:
    assert echo("elephants") == "elephants"
    cut = echo("x" * 200_000 + "END")
    assert len(cut) == 60 and cut.endswith("END") and "\u2026" in cut
    with pytest.raises(TeachingError) as info:
        service.get_group("g" * 200_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("bad", [["x"], {"a": 1}, 3])
def test_odd_payloads_are_refused_not_crashed(bad: object) -> None:
    """Raw API payloads of the wrong type get the page's message, not a server error."""
    with pytest.raises(TeachingError, match="unknown species group"):
        service.get_group(bad)  # type: ignore[arg-type]
    with pytest.raises(TeachingError, match="unknown method"):
        service.explore(None, "elephants", bad)  # type: ignore[arg-type]
    with pytest.raises(TeachingError, match="unknown backbone"):
        service.explore(None, "elephants", "gradcam", bad)  # type: ignore[arg-type]


def test_the_cli_answers_every_bad_file(corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from teaching.cli import main

    bad = [c for c in CASES if c.expected is not None]
    code = main(["explain", *(str(corpus[c.name]) for c in bad), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == len(bad) + 1, err  # one line per file, then one saying none was explained
    for case, line in zip(bad, err[:-1], strict=True):
        assert line.startswith(f"error: {case.name}: ") and case.expected in line, line


def test_compare_refuses_empty_lists_at_once(corpus: dict[str, Path]) -> None:
    photo = corpus["noise.jpg"]
    with pytest.raises(TeachingError, match="tick at least one method"):
        service.compare(photo, [], ["efficientnet_lite0"])
    with pytest.raises(TeachingError, match="tick at least one model"):
        service.compare(photo, ["gradcam"], [])
    with pytest.raises(TeachingError, match="list of names"):
        service.compare(photo, [{"x": 1}], ["efficientnet_lite0"])  # type: ignore[list-item]
    with pytest.raises(TeachingError, match="too many models"):
        service.compare(photo, ["gradcam"], ["a", "b", "c", "d", "e"])


def test_compare_deduplicates_and_keeps_its_budget(corpus: dict[str, Path]) -> None:
    photo = corpus["noise.jpg"]
    result = service.compare(photo, ["gradcam"] * 30, ["efficientnet_lite0"] * 5, budget_s=0.0)
    assert result.methods == ["gradcam"] and result.backbones == ["efficientnet_lite0"]
    # over a budget of 0 s no cell starts; each says so
    assert result.errors[("gradcam", "efficientnet_lite0")].startswith("skipped: over the 0 s")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux only")
def test_the_refusals_leave_memory_alone(tmp_path: Path) -> None:
    """The amplifying and lying files, read in a fresh process: peak resident set under the budget."""
    import subprocess
    import sys

    script = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from bench.corpus import AMPLIFYING, write_corpus\n"
        "from teaching.service import read_photo\n"
        "from teaching.errors import ImageError\n"
        "paths = write_corpus(Path(sys.argv[1]))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for name in AMPLIFYING:\n"
        "    try:\n"
        "        read_photo(paths[name])\n"
        "    except ImageError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(name + ' accepted')\n"
        "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    ).stdout.split()
    before_kb, after_kb = int(out[0]), int(out[1])
    assert after_kb - before_kb < 64 * 1024  # refused from the header: under 64 MB more than writing the corpus
