"""`--engine ray`: the same files and rows as the local run, on a local Ray (2 CPUs, 127.0.0.1, offline).

One Ray session serves the whole module (starting Ray takes seconds); every run is small: few photos, small
batches, the embedded lite0 weights (the module took 84 s on the 2 shared cores of the development machine).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from teaching.cli import main
from teaching.evaluation.cli import main as evaluate_main
from teaching.models import load_backbone
from teaching.outputs import Settings

ray = pytest.importorskip("ray", reason="the Ray engine is an optional extra (pip install 'teaching[ray]')")

from teaching import distributed  # noqa: E402  (after the skip: it is the module under test)

PHOTOS = 6  # of imagenet-val-dev, different sizes (so different crop boxes), 3 batches of 2


@pytest.fixture(scope="module")
def ray_session():
    distributed.start_ray(None, cpus=2)
    yield ray
    ray.shutdown()


def photos(fixtures_dir: Path, n: int = PHOTOS) -> list[Path]:
    found = sorted((fixtures_dir / "imagenet-val-dev" / "images").glob("*.JPEG"))[:n]
    assert len(found) == n
    return found


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.fixtures
def test_ray_explain_writes_the_local_runs_files(fixtures_dir, tmp_path, ray_session, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"hello")
    images = [str(p) for p in photos(fixtures_dir)]
    images.insert(2, str(bad))
    common = ["explain", *images, "--batch-size", "2", "--top", "2", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 1
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 1
    out, err = capsys.readouterr()
    assert "broken.png: not an image file" in err and f"1 of {len(images)} images could not be explained" in err

    local, remote = tmp_path / "local", tmp_path / "ray"
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in local.iterdir())
    index = read_csv(remote / "index.csv")
    assert [r["image"] for r in index] == images  # in the order given, the bad photo included
    assert "broken.png: not an image file" in index[2]["error"] and index[2]["top1_index"] == ""
    assert not (remote / "broken").exists()
    local_index = read_csv(local / "index.csv")

    def same_but_prob(r: dict[str, str]) -> dict[str, str]:
        return {**r, "folder": "", "top1_prob": ""}

    assert [same_but_prob(r) for r in index] == [same_but_prob(r) for r in local_index]
    for mine, theirs in zip(index, local_index, strict=True):  # batches differ (the bad photo): float rounding
        assert abs(float(mine["top1_prob"] or 0) - float(theirs["top1_prob"] or 0)) <= 1e-5
    for row in index:
        if row["error"]:
            continue
        name = Path(row["folder"]).name
        a, b = local / name, remote / name
        assert sorted(p.name for p in b.iterdir()) == sorted(p.name for p in a.iterdir())
        with np.load(a / "maps.npz") as ma, np.load(b / "maps.npz") as mb:
            assert ma.files == mb.files
            for key in ma.files:
                assert ma[key].shape == mb[key].shape
                np.testing.assert_allclose(mb[key], ma[key], rtol=0, atol=1e-4)
            assert float(ma["maps"].max()) == pytest.approx(1.0)  # real maps, not blanks
        ra, rb = (json.loads((f / "result.json").read_text()) for f in (a, b))
        for r in (ra, rb):  # the batches differ (the bad photo counts in Ray's): probabilities agree to float32
            r.pop("timings")
            for entry in (*r["classes"], *r["top5"]):
                entry["prob"] = round(entry["prob"], 5)
        assert rb == ra
        assert rb["classes"][0]["index"] == int(row["top1_index"])
    grids = [np.asarray(Image.open(f / "grid.png").convert("RGB"), dtype=float) for f in (local, remote)]
    assert grids[0].shape == grids[1].shape and np.abs(grids[0] - grids[1]).mean() < 0.05


@pytest.mark.fixtures
def test_each_actor_loads_the_model_once(fixtures_dir, tmp_path, ray_session):
    images = [str(p) for p in photos(fixtures_dir, 3)]
    folders = [tmp_path / Path(p).stem for p in images]
    bb = load_backbone("efficientnet_lite0", device="cpu")
    s = Settings(bb, "gradcam", bb.spec.target_layer, [386, 101], 3, None, None, "jet", 0.5)
    args = argparse.Namespace(
        backbone="efficientnet_lite0", weights=None, labels=None, device="cpu", address=None, workers=1, batch_size=1
    )
    rows = distributed.explain_on_ray(images, folders, s, args)
    assert [r["error"] for r in rows] == ["", "", ""]
    assert [r["classes"] for r in rows] == ["386 101"] * 3
    assert len({r["worker"] for r in rows}) == 1  # one actor did the three batches...
    assert {int(str(r["loads"])) for r in rows} == {1}  # ...and loaded the backbone once
    assert all((f / "maps.npz").is_file() for f in folders)


@pytest.mark.fixtures
def test_autograd_stays_on_inside_the_actor(fixtures_dir, tmp_path):
    """Ray's batch-inference examples wrap the model in torch.inference_mode(); the actor must not inherit it."""
    config = {
        "backbone": "efficientnet_lite0", "weights": None, "labels": None, "device": "cpu", "method": "gradcam",
        "layer": "bn2", "classes": [386], "top": 3, "contrast": None, "versus": None, "cmap": "jet", "alpha": 0.5,
    }  # fmt: skip
    actor = distributed.ExplainActor(config)
    photo = str(fixtures_dir / "species/African_elephant/eli_n02504458_African_elephant.JPEG")
    batch = {"path": np.array([photo]), "source": np.array([photo]), "order": np.array([0])}
    maps = []
    for name, mode in (("plain", torch.enable_grad), ("inference", torch.inference_mode)):
        batch["folder"] = np.array([str(tmp_path / name)])
        with mode():
            out = actor(batch)
        assert out["error"] == [""] and out["top1_index"] == ["386"]
        with np.load(tmp_path / name / "maps.npz") as m:
            maps.append(m["raw_maps"])
    assert float(maps[0].max()) > 0
    np.testing.assert_array_equal(maps[1], maps[0])


@pytest.mark.fixtures
def test_ray_evaluate_gives_the_local_rows_and_resumes(fixtures_dir, tmp_path, ray_session, capsys):
    val = fixtures_dir / "imagenet-val-dev"
    argv = [
        "--images", str(val / "images"), "--labels", str(val / "labels.csv"), "--boxes", str(val / "boxes.csv"),
        "--methods", "gradcam", "--limit", "2", "--steps", "2", "--sanity-levels", "1", "--bootstrap", "20",
        "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    assert evaluate_main([*argv, "--out", str(tmp_path / "local")]) == 0
    assert evaluate_main([*argv, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 0

    def rows(folder: str) -> dict[tuple[str, str, str], dict[str, str]]:
        found = read_csv(tmp_path / folder / "rows.csv")
        return {(r["image"], r["impl"], r["method"]): {**r, "ms": ""} for r in found}

    local, remote = rows("local"), rows("ray")
    assert len(local) == 2 * 3 and remote == local  # gradcam and the two reference maps, every column but ms
    assert "| ours | gradcam | 2 |" in (tmp_path / "ray" / "summary.md").read_text()
    capsys.readouterr()
    assert evaluate_main([*argv, "--out", str(tmp_path / "ray"), "--engine", "ray"]) == 0
    assert "2 photos already done" in capsys.readouterr().err
    assert rows("ray") == remote


def test_a_missing_ray_is_one_line(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(Exception, match=r"pip install \"teaching\[ray\]\"") as info:
        distributed.require_ray()
    assert "\n" not in str(info.value)
