"""`python -m teaching evaluate` end to end on a few real photos, offline, with the embedded lite0 weights."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from teaching.cams import compute_cams, upsample
from teaching.evaluation import variants
from teaching.evaluation.cli import main
from teaching.evaluation.data import EvaluationError, look_alike_groups
from teaching.evaluation.run import image_seed, same_maps
from teaching.evaluation.summary import bootstrap
from teaching.evaluation.variants import our_maps, parse_methods
from teaching.metrics import randomise
from teaching.models import load_backbone

FAST = [
    "--steps",
    "2",
    "--sanity-levels",
    "1",
    "--bootstrap",
    "50",
    "--device",
    "cpu",
    "--batch-size",
    "16",
    "--threads",
    "1",
]


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.fixtures
def test_evaluate_end_to_end_and_resume(fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    val = fixtures_dir / "imagenet-val-dev"
    argv = [
        "--images", str(val / "images"), "--labels", str(val / "labels.csv"), "--boxes", str(val / "boxes.csv"),
        "--methods", "gradcam,cam+pair", "--limit", "4", "--out", str(tmp_path), *FAST,
    ]  # fmt: skip
    assert main(argv) == 0
    rows = read(tmp_path / "rows.csv")
    variants = {(r["impl"], r["method"]) for r in rows}
    assert variants == {
        ("ours", "gradcam"),
        ("ours", "cam+pair"),
        ("ours", "cam"),  # the plain reference of cam+pair
        ("baseline", "random"),
        ("baseline", "centre"),
    }
    assert len(rows) == 4 * 5 and len({r["image"] for r in rows}) == 4
    for r in rows:
        assert 0 <= float(r["avg_drop"]) <= 100
        assert 0 <= float(r["deletion"]) <= 1 and 0 <= float(r["insertion"]) <= 1
        assert r["pointing"] in ("0", "1")
        assert int(r["runner_up"]) != int(r["label"])
    by = {(r["image"], r["impl"], r["method"]): r for r in rows}
    for image in {r["image"] for r in rows}:
        random, centre = by[(image, "baseline", "random")], by[(image, "baseline", "centre")]
        gradcam, cam = by[(image, "ours", "gradcam")], by[(image, "ours", "cam")]
        assert random["contrast_drop"] == random["random_drop"]  # a constant map deletes the random pixels
        assert float(random["avg_drop"]) > 99  # its image x map is all black
        assert float(centre["sanity_1"]) == 1.0 and float(centre["discrimination"]) == pytest.approx(1.0)
        assert math.isnan(float(random["sanity_1"]))
        # lite0's head is GAP + linear at bn2: Grad-CAM is the closed-form CAM, so every metric agrees
        for column in ("avg_drop", "deletion", "insertion", "contrast_drop", "discrimination"):
            assert float(gradcam[column]) == pytest.approx(float(cam[column]), abs=1e-4)
        pair = by[(image, "ours", "cam+pair")]
        assert pair["plain_drop"] == cam["contrast_drop"]  # the pair's reference is the plain map of the label
    summary = (tmp_path / "summary.md").read_text()
    assert "| ours | gradcam | 4 |" in summary and "Average Drop %" in summary
    for name in ("avg_drop", "deletion", "insertion", "pointing", "ratio", "sanity"):
        with Image.open(tmp_path / "figures" / f"{name}.png") as img:
            assert img.format == "PNG" and img.width > 300

    capsys.readouterr()
    assert main(argv) == 0  # resumed: nothing left to do
    assert "4 photos already done" in capsys.readouterr().err
    assert read(tmp_path / "rows.csv") == rows

    threads = torch.get_num_threads()
    assert main([*argv[: -len(FAST)], "--steps", "8", *FAST[2:]]) == 2
    assert torch.get_num_threads() == threads  # --threads holds for the run only
    assert "other settings (steps)" in capsys.readouterr().err


@pytest.mark.fixtures
def test_species_mode_uses_the_group_as_the_grid(fixtures_dir: Path, tmp_path: Path):
    argv = ["--species", str(fixtures_dir / "species"), "--methods", "gradcam+group", "--limit", "2"]
    assert main([*argv, "--out", str(tmp_path), *FAST]) == 0
    rows = read(tmp_path / "rows.csv")
    assert {r["group"] for r in rows} == {"elephants"}
    assert {int(r["label"]) for r in rows} <= {386, 385, 101}
    assert all(int(r["runner_up"]) in {386, 385, 101} - {int(r["label"])} for r in rows)
    assert "## elephants" in (tmp_path / "summary.md").read_text()


@pytest.mark.fixtures
def test_peers_give_the_same_gradcam_numbers(fixtures_dir: Path, tmp_path: Path):
    pytest.importorskip("pytorch_grad_cam")
    pytest.importorskip("torchcam")
    val = fixtures_dir / "flickr-ccby-dev"
    argv = ["--images", str(val / "images"), "--labels", str(val / "labels.csv"), "--methods", "gradcam"]
    assert main([*argv, "--peers", "--limit", "1", "--out", str(tmp_path), *FAST]) == 0
    rows = {r["impl"]: r for r in read(tmp_path / "rows.csv") if r["method"] == "gradcam"}
    assert set(rows) == {"ours", "pytorch-grad-cam", "torchcam"}
    for impl in ("pytorch-grad-cam", "torchcam"):
        for column in ("avg_drop", "deletion", "insertion", "discrimination"):
            assert float(rows[impl][column]) == pytest.approx(float(rows["ours"][column]), abs=2e-3)
        assert rows[impl]["sanity_1"] == "nan"  # the sanity check runs for our methods only


def test_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--images needs --labels" in capsys.readouterr().err
    assert main(["--images", str(tmp_path), "--labels", str(tmp_path / "x.csv"), "--out", "o"]) == 2
    assert "no such labels file" in capsys.readouterr().err
    assert main(["--species", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no SOURCES.tsv" in capsys.readouterr().err


def test_parse_methods():
    assert parse_methods("gradcam, contrastive,cam+pair,gradcam") == [
        ("gradcam", None),
        ("gradcam", "group"),
        ("cam", "pair"),
    ]
    with pytest.raises(EvaluationError, match="'pair' or 'group'"):
        parse_methods("gradcam+other")


def test_bootstrap_is_seeded_and_covers_the_mean():
    values = np.arange(20, dtype=float).reshape(-1, 1)
    a = bootstrap(values, lambda v: float(v[:, 0].mean()), 200, seed=1)
    assert a == bootstrap(values, lambda v: float(v[:, 0].mean()), 200, seed=1)
    assert a[0] == 9.5 and 6 < a[1] < 9 and 10 < a[2] < 13  # the standard error is 1.3


def test_image_seed_depends_on_the_photo_not_the_order():
    assert image_seed(0, "a.jpg") == image_seed(0, "a.jpg") != image_seed(0, "b.jpg")
    assert image_seed(1, "a.jpg") != image_seed(0, "a.jpg")


def test_maps_equal_within_tolerance_share_results():
    m = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert same_maps(m, m + 5e-5) and not same_maps(m, m.flip(-1))


def test_look_alike_groups_are_the_galleries():
    """The groups come from galleries/*.toml (once a copy here), in the order of the rows."""
    assert look_alike_groups() == {
        "elephants": (386, 385, 101),
        "sharks": (4, 2, 3),
        "butterflies": (321, 322, 323, 324, 325, 326),
    }
    assert list(look_alike_groups()) == ["elephants", "sharks", "butterflies"]


def test_our_maps_give_the_head_by_the_apps_rule(monkeypatch: pytest.MonkeyPatch):
    """Backbone.head decides who gets the head, as in the app; a randomised copy (sanity check) gets its own."""
    bb = load_backbone("efficientnet_lite0", device="cpu")
    given: list[tuple[object, object]] = []

    def spy(*args: Any) -> Any:
        given.append((args[0], args[7]))  # (model, linear)
        return compute_cams(*args)

    monkeypatch.setattr(variants, "compute_cams", spy)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    copy = randomise(bb.model, ["classifier"], seed=1)
    gradcam = our_maps("gradcam", "bn2", bb)(bb.model, x, [386, 101], None, None)
    cam_copy = our_maps("cam", "bn2", bb)(copy, x, [386, 101], None, None)
    our_maps("guided_gradcam", "bn2", bb)(bb.model, x, [386], None, None)
    assert given == [(bb.model, bb.model.classifier), (copy, copy.classifier), (bb.model, None)]
    backward = compute_cams(bb.model, x, [386, 101], "gradcam", "bn2").raw  # no head: the backward pass
    torch.testing.assert_close(gradcam, upsample(backward, (224, 224))[0], rtol=1e-4, atol=1e-5)
    reference = compute_cams(copy, x, [386, 101], "cam", "bn2", linear=copy.get_submodule("classifier")).raw
    torch.testing.assert_close(cam_copy, upsample(reference, (224, 224))[0])
