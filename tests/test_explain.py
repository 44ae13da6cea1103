"""The public API `explain` on the real offline lite0 weights and the species photos."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from teaching import explain
from teaching.api import contrast_of
from teaching.cams.maps import upsample
from teaching.errors import ClassNameError, MethodError
from teaching.models import load_backbone

ELEPHANTS = [386, 385, 101]


def _photo(fixtures: Path, folder: str, pattern: str = "eli_*") -> Path:
    return sorted((fixtures / "species" / folder).glob(pattern))[0]


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0", device="cpu")


def test_explain_returns_the_documented_fields(fixtures_dir, lite0):
    path = _photo(fixtures_dir, "African_elephant")
    r = explain(path, classes=["African elephant", "Indian_elephant", 101], backbone=lite0)
    assert r.classes == ELEPHANTS
    assert r.class_names == ["African elephant", "Indian elephant", "tusker"]
    width, height = r.image.size
    assert r.maps.shape == (3, height, width) and r.maps.dtype == np.float32
    assert r.raw_maps.shape == (3, 9, 9) and r.raw_maps.dtype == np.float32
    assert r.target_layer == "bn2"
    assert r.input_tensor.shape == (1, 3, 288, 288)
    assert r.probs.shape == (1000,) and abs(float(r.probs.sum()) - 1) < 1e-4
    # the prediction is the one of the very input the model saw
    with torch.no_grad():
        logits = lite0.model(r.input_tensor)
    np.testing.assert_allclose(r.probs, torch.softmax(logits / 0.38, 1)[0].numpy(), atol=1e-5)  # the fitted temperature
    assert lite0.spec.temperature == 0.38
    # an elephant photo: the model's top class is one of the elephants
    assert r.top(1)[0][0] in ELEPHANTS
    # the scaled maps are the raw maps, upsampled onto the crop the model saw, each in [0, 1]
    x0, y0, x1, y1 = r.crop_box
    inner = upsample(torch.from_numpy(r.raw_maps)[None], (y1 - y0, x1 - x0))[0].numpy()
    np.testing.assert_allclose(r.crop_maps(), inner, atol=1e-6)
    assert r.maps.max() == pytest.approx(1.0, abs=1e-5) and r.maps.min() >= 0
    assert (r.maps[:, :y0, :] == 0).all() and (r.maps[:, y1:, :] == 0).all()
    assert set(r.timings) >= {"forward", "backward", "total"}


def test_maps_at_display_size_come_straight_from_the_raw_maps(fixtures_dir, lite0):
    """What a page shows is made at its own size; at the photo's size it is exactly the full-size maps."""
    r = explain(_photo(fixtures_dir, "Indian_elephant"), classes=ELEPHANTS, backbone=lite0)
    x0, y0, x1, y1 = r.crop_box
    assert "maps" not in vars(r)  # the full-size maps are made on first use only
    np.testing.assert_array_equal(r.crop_maps((x1 - x0, y1 - y0)), r.crop_maps())
    np.testing.assert_array_equal(r.maps_at(r.image.size), r.maps)
    small = r.crop_maps((96, 96))
    assert small.shape == (3, 96, 96) and small.min() >= 0 and small.max() == pytest.approx(1.0, abs=1e-6)
    # the same peak, at the same relative place, as the full-size maps
    for full, m in zip(r.crop_maps(), small, strict=True):
        fy, fx = np.unravel_index(full.argmax(), full.shape)
        sy, sx = np.unravel_index(m.argmax(), m.shape)
        assert abs(fy / full.shape[0] - sy / 96) < 0.05 and abs(fx / full.shape[1] - sx / 96) < 0.05
    half = (r.image.width // 2, r.image.height // 2)
    shown = r.maps_at(half)
    assert shown.shape == (3, half[1], half[0])
    assert (shown[:, : y0 // 2 - 1, :] == 0).all() and (shown[:, y1 // 2 + 1 :, :] == 0).all()
    np.testing.assert_allclose(shown.mean((1, 2)), r.maps.mean((1, 2)), atol=0.01)


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "xgradcam", "layercam", "contrastive"])
def test_gradient_methods_skip_the_backward_pass_at_the_pooled_layer(fixtures_dir, lite0, method):
    """explain hands the head to the gradient methods: at bn2 (feeding the pool) no backward pass runs, and the
    maps are those of the backward pass; at another layer the backward pass runs."""
    from teaching.cams import compute_cams

    r = explain(_photo(fixtures_dir, "African_elephant"), classes=ELEPHANTS, method=method, backbone=lite0)
    assert r.timings["closed_form"] == 1.0
    backward = compute_cams(lite0.model, r.input_tensor, ELEPHANTS, method, "bn2")  # no head: the backward pass
    assert backward.timings["closed_form"] == 0.0
    np.testing.assert_allclose(r.raw_maps, backward.raw[0].numpy(), rtol=1e-4, atol=1e-6)
    other = explain(r.image, classes=ELEPHANTS, method=method, backbone=lite0, layer="blocks.6")
    assert other.timings["closed_form"] == 0.0


def test_default_classes_are_the_top_predictions(fixtures_dir, lite0):
    r = explain(_photo(fixtures_dir, "hammerhead", "acuity_*"), backbone=lite0, top_k=3)
    assert r.classes == [i for i, _, _ in r.top(3)]
    assert r.classes[0] == 4  # the hammerhead photo is recognised


def test_closed_form_cam_equals_gradcam_on_a_gap_head(fixtures_dir, lite0):
    path = _photo(fixtures_dir, "tiger_shark")
    grad = explain(path, classes=[4, 2, 3], method="gradcam", backbone=lite0)
    cam = explain(path, classes=[4, 2, 3], method="cam", backbone=lite0)
    # dy/dA = W / (h w) at the layer feeding the average pool: the maps agree up to that factor (9 x 9 at 288 px)
    assert grad.raw_maps.shape[1:] == (9, 9)
    np.testing.assert_allclose(cam.raw_maps / 81.0, grad.raw_maps, rtol=1e-4, atol=1e-6)


def test_contrastive_maps_separate_the_elephants(fixtures_dir, lite0):
    path = _photo(fixtures_dir, "Indian_elephant")
    plain = explain(path, classes=ELEPHANTS, method="gradcam", backbone=lite0)
    contrast = explain(path, classes=ELEPHANTS, method="contrastive", backbone=lite0)

    def mean_corr(maps: np.ndarray) -> float:
        flat = maps.reshape(len(maps), -1)
        c = np.corrcoef(flat)
        return float(c[np.triu_indices(len(maps), 1)].mean())

    plain_corr, contrast_corr = mean_corr(plain.raw_maps), mean_corr(contrast.raw_maps)
    print(f"mean correlation between elephant maps: plain {plain_corr:.3f}, contrastive {contrast_corr:.3f}")
    assert plain_corr > 0.8  # sibling classes share their evidence
    assert contrast_corr < plain_corr - 0.3


def test_pair_contrast_is_gradcam_of_the_logit_margin(fixtures_dir, lite0):
    path = _photo(fixtures_dir, "African_elephant")
    pair = explain(path, classes=[386], method="contrastive", versus="Indian elephant", backbone=lite0)
    x = pair.input_tensor.clone()
    acts: list[torch.Tensor] = []
    handle = lite0.model.bn2.register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        with torch.enable_grad():
            logits = lite0.model(x.requires_grad_(True))
            (g,) = torch.autograd.grad(logits[0, 386] - logits[0, 385], acts[0])
    finally:
        handle.remove()
    ref = torch.relu((g.mean((2, 3), keepdim=True) * acts[0]).sum(1))[0].detach().numpy()
    np.testing.assert_allclose(pair.raw_maps[0], ref, rtol=1e-4, atol=1e-6)


def test_threads_share_one_model_and_get_their_own_maps(fixtures_dir, lite0):
    jobs = [
        (_photo(fixtures_dir, "African_elephant"), ELEPHANTS),
        (_photo(fixtures_dir, "hammerhead", "acuity_*"), [4, 2, 3]),
    ]
    expected = [explain(p, classes=c, backbone=lite0).raw_maps for p, c in jobs]
    barrier = threading.Barrier(len(jobs))
    results: dict[int, list[np.ndarray]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                barrier.wait(timeout=30)
                results[i].append(explain(jobs[i][0], classes=jobs[i][1], backbone=lite0).raw_maps)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for i, runs in results.items():
        assert len(runs) == 3
        for got in runs:
            np.testing.assert_allclose(got, expected[i], rtol=1e-5, atol=1e-6)
    assert not any(m._forward_hooks for m in lite0.model.modules())


def test_bad_class_and_method_names_are_user_errors(fixtures_dir, lite0):
    path = _photo(fixtures_dir, "African_elephant")
    with pytest.raises(ClassNameError, match="African elephant"):
        explain(path, classes=["Afrikan elefant"], backbone=lite0)
    with pytest.raises(MethodError, match="gradcam"):
        explain(path, classes=[386], method="gradcan", backbone=lite0)
    assert not any(m._forward_hooks for m in lite0.model.modules())
    assert not lite0.model.training


@pytest.mark.parametrize("method", ["gradcam", "xgradcam", "cam"])
def test_group_contrast_from_one_pass_equals_the_contrastive_pass(fixtures_dir, lite0, method):
    path = _photo(fixtures_dir, "tiger_shark")
    plain = explain(path, classes=[4, 2, 3], method=method, backbone=lite0)
    derived = contrast_of(plain)
    assert derived is not None and derived.contrast == "group"
    direct = explain(path, classes=[4, 2, 3], method=method, backbone=lite0, contrast="group")
    assert float(np.abs(direct.raw_maps).max()) > 0
    np.testing.assert_allclose(derived.raw_maps, direct.raw_maps, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(derived.maps, direct.maps, atol=1e-4)


def test_no_one_pass_contrast_for_methods_not_linear_in_the_score(fixtures_dir, lite0):
    path = _photo(fixtures_dir, "tiger_shark")
    assert contrast_of(explain(path, classes=[4, 2, 3], method="gradcampp", backbone=lite0)) is None
    assert contrast_of(explain(path, classes=[4, 2, 3], method="contrastive", backbone=lite0)) is None


def test_shown_maps_put_a_row_on_one_scale_on_held_out_confident_photos(fixtures_dir):
    """Issue 13: on ImageNet val photos the model gets right with p >= 0.8, the contrast row is drawn on one scale:
    the label's panel reaches 1 and the other classes' panels are drawn faint (median <= 0.35 of it)."""
    import csv

    bb = load_backbone("efficientnet_lite0")
    root = fixtures_dir / "imagenet-val-dev"
    rows = list(csv.DictReader((root / "labels.csv").open()))[:40]
    others, confident = [], 0
    for r in rows:
        label = int(r["imagenet_index"])
        plain = explain(root / "images" / r["file"], top_k=3, backbone=bb)
        if plain.classes[0] != label or plain.probs[label] < 0.8:
            continue
        confident += 1
        e = contrast_of(plain)
        assert e is not None
        shown, peaks = e.shown_maps, e.raw_maps.reshape(len(e.classes), -1).max(1)
        assert shown.dtype == np.float32 and shown.shape == (3, *plain.image.size[::-1])
        assert shown.min() >= 0 and abs(float(shown.max()) - 1) < 1e-5
        # each panel's peak is its raw evidence relative to the row's strongest (bilinear resizing: within 5%)
        np.testing.assert_allclose(shown.reshape(3, -1).max(1), peaks / peaks.max(), rtol=0.05, atol=1e-3)
        if peaks.argmax() == 0:
            assert abs(float(shown[0].max()) - 1) < 1e-5
        others.append(float(shown[1:].max() / max(float(shown[0].max()), 1e-12)))
    assert confident >= 10
    assert float(np.median(others)) <= 0.35
