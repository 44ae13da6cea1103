"""Engine edge cases on small seeded models: blank maps, low precision, k = 1000, per-image class tables, batches,
the closed-form CAM, gradients in closed form and their fallback, Score-CAM's flat channels, occlusion windows,
Smooth Grad-CAM++ seeding, options, errors and method registration."""

from __future__ import annotations

import copy
import random
import subprocess
import sys

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from helpers import TinyNet
from torch import nn

from teaching.cams import (
    METHODS,
    GradCAM,
    GradientCAM,
    batched_grad,
    class_scores,
    compute_cams,
    eval_mode,
    feeds_gap_linear,
    find_layer,
    forward_with_activation,
    gap_linear_grads,
    spatially_constant,
)
from teaching.cams.accel import TOLERANCE
from teaching.cams.activation import channel_masks
from teaching.cams.maps import _bilinear_weights, _cell_end_weights, _resize, _resized_extremes, minmax, upsample
from teaching.errors import MethodError
from teaching.models import load_backbone

OURS = [
    "gradcam",
    "gradcampp",
    "xgradcam",
    "layercam",
    "contrastive",
    "cam",
    "scorecam",
    "occlusion",
    "smoothgradcampp",
]


def image(seed: int, size: int = 16, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def run(model: nn.Module, x: torch.Tensor, classes, method: str, layer: str = "features.4", **opts: object):
    return compute_cams(model, x, classes, method, layer, linear=model.fc, **opts)


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return TinyNet()


# --- blank maps and precision -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_blank_and_flat_maps_scale_to_zero_without_nan(dtype):
    zeros = torch.zeros(2, 3, 7, 7, dtype=dtype)
    up = upsample(zeros, (32, 32))
    assert up.dtype == torch.float32 and torch.equal(up, torch.zeros(2, 3, 32, 32))
    assert torch.equal(minmax(torch.full((1, 1, 4, 4), 5.0, dtype=dtype)), torch.zeros(1, 1, 4, 4))
    odd = torch.tensor([[[[float("nan"), 1.0], [0.0, 2.0]]]], dtype=dtype)
    torch.testing.assert_close(minmax(odd), torch.tensor([[[[0.0, 0.5], [0.0, 1.0]]]]))


def test_scaling_does_not_depend_on_the_magnitude():
    m = torch.rand(1, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(minmax(m * 1e-6), minmax(m))
    assert float(minmax(m * 1e-30).amax()) == pytest.approx(1.0)


# --- upsampling -------------------------------------------------------------------------------------------------


def resize_then_scale(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference: resize the maps, then min-max scale the resized ones (what `upsample` gave before)."""
    out = F.interpolate(torch.nan_to_num(maps.float(), nan=0.0), size=size, mode="bilinear", align_corners=False)
    lo, hi = out.amin((-2, -1), keepdim=True), out.amax((-2, -1), keepdim=True)
    return (out - lo) / (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)


def random_resizes(seed: int, n: int) -> list[tuple[int, int, int, int]]:
    """n seeded (h, w, H, W): whole-number factors, other enlargements, and any size (shrinking on an axis too)."""
    rng = random.Random(seed)
    sizes = []
    for i in range(n):
        h, w = rng.randint(1, 12), rng.randint(1, 12)
        if i % 3 == 0:
            sizes.append((h, w, h * rng.randint(1, 40), w * rng.randint(1, 40)))
        elif i % 3 == 1:
            sizes.append((h, w, rng.randint(h, 300), rng.randint(w, 300)))
        else:
            sizes.append((h, w, rng.randint(1, 300), rng.randint(1, 300)))
    return sizes


def exactly_resized_then_scaled(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference in float64, on the sample positions of F.interpolate (float32, see `_bilinear_weights`)."""
    rows, cols = _bilinear_weights(maps.shape[-2], size[0]), _bilinear_weights(maps.shape[-1], size[1])
    out = rows.double() @ maps.double() @ cols.double().T
    lo, hi = out.amin((-2, -1), keepdim=True), out.amax((-2, -1), keepdim=True)
    flat = hi - lo <= 1e-12 * hi  # shrinking a map may leave a flat one, but float64 rounding
    return torch.where(flat, 0.0, (out - lo) / (hi - lo))


@pytest.mark.parametrize("seed", range(3))
def test_upsample_equals_resizing_then_scaling(seed):
    """Scaling the small maps gives the scaling of the resized ones. Maps with min 0 (as after ReLU) keep the float32
    reference within its own rounding: over 8,000 random sizes, ours was within 4.4e-7 of the float64 reference and
    1.0e-6 of the float32 one (itself within 9.6e-7 of float64, but where it rounds a flat axis into noise)."""
    gen = torch.Generator().manual_seed(seed)
    for i, (h, w, big_h, big_w) in enumerate(random_resizes(seed, 120)):
        maps = torch.randn(2, 3, h, w, generator=gen) * 10.0 ** ((i % 13) - 6)
        maps -= maps.amin((-2, -1), keepdim=True)
        kept = maps.clone()
        got = upsample(maps, (big_h, big_w))
        assert torch.equal(maps, kept) and got.shape == (2, 3, big_h, big_w)
        assert float(got.amin()) >= 0.0 and float(got.amax()) <= 1.0
        exact = float((got - exactly_resized_then_scaled(maps, (big_h, big_w))).abs().max())
        assert exact <= 1e-6, f"{(h, w)} -> {(big_h, big_w)}: {exact:.2e} from float64"
        diff = float((got - resize_then_scale(maps, (big_h, big_w))).abs().max())
        assert diff <= 1.5e-6, f"{(h, w)} -> {(big_h, big_w)}: {diff:.2e} from float32"


def test_small_maps_resized_by_matmul_equal_interpolate():
    gen = torch.Generator().manual_seed(4)
    for h, w, big_h, big_w in random_resizes(4, 150):
        maps = torch.rand(2, 3, h, w, generator=gen)
        ref = F.interpolate(maps, size=(big_h, big_w), mode="bilinear", align_corners=False)
        torch.testing.assert_close(_resize(maps, (big_h, big_w)), ref, rtol=0, atol=1.5e-6)  # measured 8.9e-7


@pytest.mark.parametrize("seed", range(2))
def test_the_extremes_of_a_resized_map_come_from_the_rows_and_columns_that_end_a_cell(seed):
    gen = torch.Generator().manual_seed(seed + 10)
    for h, w, big_h, big_w in random_resizes(seed + 10, 150):
        maps = torch.randn(1, 4, h, w, generator=gen)
        full = F.interpolate(maps, size=(big_h, big_w), mode="bilinear", align_corners=False)
        lo, hi = _resized_extremes(maps, (big_h, big_w))
        atol = 2e-6 * float(maps.abs().amax())  # a few float32 roundings of the largest value (measured <= 7e-7)
        torch.testing.assert_close(lo[..., 0, 0], full.amin((-2, -1)), rtol=0, atol=atol)
        torch.testing.assert_close(hi[..., 0, 0], full.amax((-2, -1)), rtol=0, atol=atol)
    assert _cell_end_weights(7, 224).shape == (14, 7)  # 14 rows of 224: the first and last in each of 7 cells


@pytest.mark.parametrize(
    ("h", "w", "big_h", "big_w"), [(7, 7, 31, 31), (7, 7, 200, 200), (1, 1, 35, 229), (6, 2, 1, 175)]
)
def test_flat_maps_upsample_to_zero_at_any_scale(h, w, big_h, big_w):
    """Resizing a flat map by a non-integer factor may round it into a non-flat one: scaled, that was noise in 0..1."""
    flat = torch.tensor([5.0, 0.1, 1 / 3, 1234.567, -2.0]).view(1, 5, 1, 1).expand(1, 5, h, w)
    assert torch.equal(upsample(flat, (big_h, big_w)), torch.zeros(1, 5, big_h, big_w))


@pytest.mark.parametrize(("h", "w", "big_h", "big_w"), [(10, 1, 1, 71), (1, 6, 40, 3), (5, 1, 33, 47)])
def test_maps_constant_along_an_axis_stay_constant_along_it(h, w, big_h, big_w):
    """As for flat maps: a lone row or column must not gain rounding noise across the other axis."""
    maps = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(5))
    got = upsample(maps, (big_h, big_w))
    assert torch.equal(got, got[..., :1, :].expand_as(got)) or torch.equal(got, got[..., :1].expand_as(got))
    flat_out = (w == 1 or big_w == 1) and (h == 1 or big_h == 1)  # constant along both axes
    assert flat_out == (float(got.abs().amax()) == 0.0)
    if not flat_out:
        torch.testing.assert_close(got, resize_then_scale(maps, (big_h, big_w)), rtol=0, atol=1.5e-6)


def test_upsample_reads_nan_as_zero_and_leaves_unscaled_resizing_alone():
    maps = torch.rand(2, 3, 5, 6, generator=torch.Generator().manual_seed(3))
    maps[0, 1, 2, 3] = maps[1, 2, 0, 0] = float("nan")
    clean = torch.nan_to_num(maps, nan=0.0)
    assert torch.equal(upsample(maps, (40, 33)), upsample(clean, (40, 33)))
    expected = F.interpolate(clean, size=(40, 33), mode="bilinear", align_corners=False)
    assert torch.equal(upsample(maps, (40, 33), normalise=False), expected)
    assert torch.equal(upsample(maps.half(), (40, 33)), upsample(maps.half().float(), (40, 33)))


@pytest.mark.parametrize("method", OURS)
def test_a_dead_target_layer_gives_blank_maps_not_nan(method):
    model, x = TinyNet(dead=16), image(1)
    out = run(model, x, [1, 2], method)
    assert torch.equal(out.raw, torch.zeros_like(out.raw))
    assert torch.equal(upsample(out.raw, (16, 16)), torch.zeros(1, 2, 16, 16))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", OURS)
def test_low_precision_inputs_and_models_on_cpu(tiny, dtype, method):
    x = image(2).to(dtype)
    full = run(tiny, x.float(), [1, 2], method)
    cast = run(tiny, x, [1, 2], method)  # a float32 model casts the input to its own dtype
    assert cast.raw.dtype == torch.float32 and torch.equal(cast.raw, full.raw)
    low = run(copy.deepcopy(tiny).to(dtype), x, [1, 2], method)
    assert low.raw.dtype == low.logits.dtype == torch.float32
    assert bool(torch.isfinite(low.raw).all())
    cosine = torch.nn.functional.cosine_similarity(low.raw.flatten(), full.raw.flatten(), dim=0)
    assert float(cosine) > 0.97, f"{method} in {dtype}: cosine {float(cosine):.3f} to the float32 maps"


# --- classes and batches ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_all_1000_classes_at_once_on_a_lite0_sized_model():
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    x, picked = image(3, 128), [0, 386, 999]
    grad = compute_cams(model, x, range(1000), "gradcam", "bn2").raw  # (1, 1000, 4, 4)
    assert grad.shape == (1, 1000, 4, 4) and int((grad.amax((-2, -1)) > 0).sum()) > 300
    closed = compute_cams(model, x, range(1000), "cam", "bn2", linear=model.classifier).raw
    torch.testing.assert_close(closed, grad * 16, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grad[:, picked], compute_cams(model, x, picked, "gradcam", "bn2").raw)
    plus = compute_cams(model, x, range(1000), "gradcampp", "bn2").raw
    torch.testing.assert_close(plus[:, picked], compute_cams(model, x, picked, "gradcampp", "bn2").raw)


@pytest.mark.parametrize("method", OURS)
def test_batches_and_per_image_class_tables_give_the_maps_of_one_image_at_a_time(tiny, method):
    x = image(4, batch=3)
    table = torch.tensor([[1, 2], [3, 4], [9, 0]])
    shared = run(tiny, x, [5, 7], method)
    per_image = run(tiny, x, table, method)
    for b in range(3):
        alone = run(tiny, x[b : b + 1], [5, 7], method)
        torch.testing.assert_close(shared.raw[b : b + 1], alone.raw, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(shared.logits[b : b + 1], alone.logits, rtol=1e-5, atol=1e-6)
        alone = run(tiny, x[b : b + 1], table[b].tolist(), method)
        torch.testing.assert_close(per_image.raw[b : b + 1], alone.raw, rtol=1e-5, atol=1e-6)
    assert bool((per_image.raw.amax((-2, -1)) > 0).any())


# --- the closed form --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet50().eval()


@pytest.mark.parametrize("contrast", [None, "group", "pair"])
def test_closed_form_cam_is_gradcam_times_hw_on_resnet50(resnet50, contrast):
    model = resnet50
    x, classes = image(5, 128), [3, 207, 980]
    versus = 386 if contrast == "pair" else None
    grad = compute_cams(model, x, classes, "gradcam", "layer4", contrast, versus).raw  # (1, 3, 4, 4)
    closed = compute_cams(model, x, classes, "cam", "layer4", contrast, versus, model.fc).raw
    assert bool((grad.amax((-2, -1)) > 0).any())
    torch.testing.assert_close(closed, grad * 16, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_closed_form_cam_is_gradcam_times_hw_on_lite0_real_weights():
    bb = load_backbone("efficientnet_lite0", device="cpu")
    x, classes = image(6, 224), [386, 385, 101]
    grad = compute_cams(bb.model, x, classes, "gradcam", "bn2").raw  # (1, 3, 7, 7)
    closed = compute_cams(bb.model, x, classes, "cam", "bn2", linear=bb.model.classifier).raw
    assert bool((grad.amax((-2, -1)) > 0).all())
    torch.testing.assert_close(closed, grad * 49, rtol=1e-4, atol=1e-6)


# --- gradients in closed form -----------------------------------------------------------------------------------

GRADIENT_RUNS = [  # method, contrast, versus
    ("gradcam", None, None),
    ("gradcampp", None, None),
    ("xgradcam", None, None),
    ("layercam", None, None),
    ("contrastive", "group", None),
    ("contrastive", "pair", 4),
]


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def both_ways(
    model: nn.Module, x: torch.Tensor, layer: str, linear: nn.Module, method: str, contrast, versus, top=None
):
    """(backward pass, closed form) outputs for the classes `top`, by default each image's top-3 (seldom blank)."""
    if top is None:
        with torch.no_grad():
            top = model(x).topk(3).indices  # (B, 3)
    grad = compute_cams(model, x, top, method, layer, contrast, versus)
    closed = compute_cams(model, x, top, method, layer, contrast, versus, linear)
    return grad, closed


@pytest.mark.parametrize(("method", "contrast", "versus"), GRADIENT_RUNS)
@pytest.mark.parametrize(("arch", "layer", "size"), [("tiny", "features.4", 16), ("resnet18", "layer4", 96)])
def test_gradients_in_closed_form_match_the_backward_pass(request, arch, layer, size, method, contrast, versus):
    model = request.getfixturevalue(arch)
    x = image(14, size, batch=2)
    grad, closed = both_ways(model, x, layer, model.fc, method, contrast, versus)
    assert grad.timings["closed_form"] == 0.0 and closed.timings["closed_form"] == 1.0
    assert bool((grad.raw.amax((-2, -1)) > 0).all())
    diff = float((upsample(closed.raw, (size, size)) - upsample(grad.raw, (size, size))).abs().max())
    print(f"{arch} {method} {contrast}: max |closed form - backward| on normalised maps = {diff:.1e}")
    assert diff < 2e-6  # measured <= 8e-7
    torch.testing.assert_close(closed.raw, grad.raw, rtol=1e-5, atol=1e-6 * float(grad.raw.amax()))
    torch.testing.assert_close(closed.logits, grad.logits, rtol=0, atol=0)


def test_closed_form_gradients_are_a_broadcast_view_of_the_head_weights(tiny):
    x = image(15, batch=2)
    classes = torch.tensor([[1, 2, 3], [4, 5, 6]])
    for contrast, versus in [(None, None), ("group", None), ("pair", 9)]:
        acts, logits = forward_with_activation(tiny, x, tiny.features[4])  # (2, 16, 8, 8)
        closed = gap_linear_grads(acts, logits, tiny.fc, classes, contrast, versus)
        assert closed is not None and closed.shape == (3, 2, 16, 8, 8) and closed.stride()[-2:] == (0, 0)
        ref = batched_grad(class_scores(logits, classes, contrast, versus), acts)
        torch.testing.assert_close(closed, ref, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(closed[0, 0, :, 0, 0], (tiny.fc.weight[1] - tiny.fc.weight[9]) / 64)


NOT_FEEDING_THE_POOL = [("tiny", "features.3"), ("resnet18", "layer3"), ("resnet18", "layer4.1.bn2")]


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "xgradcam", "layercam"])
def test_spatially_constant_gradients_take_the_same_maps_without_the_spatial_dims(method):
    """The (k, B, C) shortcuts for a broadcast gradient give the maps of the same gradient written out in full."""
    gen = torch.Generator().manual_seed(18)
    acts = torch.relu(torch.randn(1, 2, 6, 5, 4, generator=gen))  # (1, B, C, h, w)
    g = torch.randn(3, 2, 6, 1, 1, generator=gen) * 1e-2
    g[0, 0, :2] = 0.0  # Grad-CAM++ sets alpha = 0 where the gradient is 0
    broadcast = g.expand(3, 2, 6, 5, 4)
    assert spatially_constant(broadcast) is not None and spatially_constant(broadcast.contiguous()) is None
    impl = METHODS[method]()
    assert isinstance(impl, GradientCAM)
    full = impl.combine(acts, broadcast.contiguous())  # (k, B, h, w)
    assert full.shape == (3, 2, 5, 4) and float(full.abs().amax()) > 0
    torch.testing.assert_close(impl.combine(acts, broadcast), full, rtol=1e-5, atol=1e-7)


def test_the_engine_maths_stay_float32_inside_autocast(tiny):
    """FastCAM runs the engine under autocast: the maps' matmuls and the head check must not drop to bfloat16."""
    x = image(19, batch=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        acts, logits = forward_with_activation(tiny, x, tiny.features[4])
        grads = gap_linear_grads(acts, logits, tiny.fc, torch.tensor([[1, 2], [3, 4]]))
        assert grads is not None
        inside = GradCAM().combine(acts.detach().float().unsqueeze(0), grads)
        maps = torch.rand(1, 3, 7, 7, generator=torch.Generator().manual_seed(6))
        resized = upsample(maps, (50, 50))
    assert logits.dtype == torch.bfloat16 and inside.dtype == resized.dtype == torch.float32
    outside = GradCAM().combine(acts.detach().float().unsqueeze(0), grads)
    assert torch.equal(inside, outside) and torch.equal(resized, upsample(maps, (50, 50)))


@pytest.mark.parametrize(("arch", "layer"), NOT_FEEDING_THE_POOL)
@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam"])
def test_a_layer_that_does_not_feed_the_pool_takes_the_backward_pass(request, arch, layer, method):
    """features.3 and layer4.1.bn2 have the head's width but a ReLU (and a residual) before the pool; layer3 not."""
    model = request.getfixturevalue(arch)
    x = image(16, 16 if arch == "tiny" else 64)
    acts, logits = forward_with_activation(model, x, find_layer(model, layer))
    assert not feeds_gap_linear(acts, logits, model.fc)
    grad, closed = both_ways(model, x, layer, model.fc, method, None, None)
    assert closed.timings["closed_form"] == 0.0
    assert torch.equal(closed.raw, grad.raw) and bool((grad.raw.amax((-2, -1)) > 0).any())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("method", "contrast", "versus"), GRADIENT_RUNS)
def test_closed_form_gradients_in_low_precision(tiny, dtype, method, contrast, versus):
    """The head's check allows the rounding of half precision: the closed form holds for half models and autocast."""
    x = image(29, batch=2)  # every map holds >= 0.15 of the largest: none is ill-conditioned after scaling
    low = copy.deepcopy(tiny).to(dtype)
    full, _ = both_ways(tiny, x, "features.4", tiny.fc, method, contrast, versus)
    assert bool((full.raw.amax((-2, -1)) > 0.15 * full.raw.amax()).all())
    top = tiny(x).topk(3).indices
    grad, closed = both_ways(low, x, "features.4", low.fc, method, contrast, versus, top)
    assert closed.timings["closed_form"] == 1.0
    for out in (grad, closed):  # both within the engine's stated bound for the dtype (teaching.accel.TOLERANCE)
        assert float((upsample(out.raw, (16, 16)) - upsample(full.raw, (16, 16))).abs().max()) < TOLERANCE[dtype]
    with torch.autocast("cpu", dtype=dtype):
        assert run(tiny, x, [1, 2], method, contrast=contrast, versus=versus).timings["closed_form"] == 1.0


# --- Score-CAM and occlusion ------------------------------------------------------------------------------------


def scorecam_by_hand(model: nn.Module, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Score-CAM of one image with every channel scored, one masked input per channel, (k, h, w)."""
    store: list[torch.Tensor] = []
    handle = model.features[4].register_forward_hook(lambda _m, _i, out: store.append(out))
    with torch.no_grad():
        model(x)
    handle.remove()
    acts = store[0][0]  # (C, h, w)
    masks = channel_masks(acts[:, None], (x.shape[-2], x.shape[-1]))  # (C, 1, H, W)
    with torch.no_grad():
        scores = model(x * masks)[:, classes]  # (C, k)
    weights = torch.softmax(scores.T, dim=-1)  # (k, C)
    return torch.relu(torch.einsum("kc,chw->khw", weights, acts))


def test_scorecam_skipping_flat_channels_changes_nothing():
    model = TinyNet(dead=6)
    with torch.no_grad():  # channel 6: a constant 5 everywhere, flat before upsampling
        model.features[3].weight[6] = 0.0
        model.features[3].bias[6] = 5.0
    x, classes = image(7, 20), [2, 8]
    raw = compute_cams(model, x, classes, "scorecam", "features.4", batch_size=4).raw[0]
    assert bool((raw.amax((-2, -1)) > 0).all())
    torch.testing.assert_close(raw, scorecam_by_hand(model, x, classes), rtol=1e-5, atol=1e-7)


def test_scorecam_batch_size_does_not_change_the_maps(tiny):
    x = image(8, batch=2)
    maps = [run(tiny, x, [1, 6], "scorecam", batch_size=n).raw for n in (1, 7, 64)]
    torch.testing.assert_close(maps[0], maps[1])
    torch.testing.assert_close(maps[0], maps[2])


class PixelSum(nn.Module):
    """Two scores: the sum of the input and its negative."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.sum((1, 2, 3))
        return torch.stack([s, -s], 1)


def test_occlusion_by_hand_with_a_cut_off_last_window():
    x = torch.ones(1, 3, 5, 5)
    out = compute_cams(PixelSum(), x, [0, 1], "occlusion", window=2, stride=2)
    # windows [0, 2), [2, 4), [4, 5) on each axis: occluding one removes 3 channels x its area from the sum
    side = torch.tensor([2.0, 2, 2, 2, 1])
    torch.testing.assert_close(out.raw[0, 0], 3 * side[:, None] * side[None, :])
    assert torch.equal(out.raw[0, 1], torch.zeros(5, 5))  # the negative score only rises: relu leaves 0
    assert out.raw.shape == (1, 2, 5, 5) and out.layer == ""


def test_occlusion_default_window_is_a_seventh_of_the_side(tiny):
    x = image(9, 28)
    default = run(tiny, x, [1], "occlusion").raw
    torch.testing.assert_close(default, run(tiny, x, [1], "occlusion", window=4, stride=2).raw)


# --- Smooth Grad-CAM++ ------------------------------------------------------------------------------------------


def test_smoothgradcampp_repeats_with_a_seed_and_leaves_the_global_rng_alone(tiny):
    x = image(10, batch=2)
    state = torch.get_rng_state()
    a = run(tiny, x, [1, 2], "smoothgradcampp", seed=3).raw
    b = run(tiny, x, [1, 2], "smoothgradcampp", seed=3).raw
    c = run(tiny, x, [1, 2], "smoothgradcampp", seed=4).raw
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert float((a - c).abs().max()) > 1e-3
    d = run(tiny, x, [1, 2], "smoothgradcampp", seed=3, n_samples=8, std=0.1).raw
    assert float((a - d).abs().max()) > 1e-3


# --- options, errors, modes, registration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "opts"),
    [
        ("scorecam", {"batch_size": 0}),
        ("occlusion", {"batch_size": "64"}),
        ("occlusion", {"window": 17}),
        ("occlusion", {"window": 4, "stride": 5}),
        ("smoothgradcampp", {"n_samples": 0}),
        ("smoothgradcampp", {"n_samples": 2.5}),
        ("smoothgradcampp", {"std": -1.0}),
        ("smoothgradcampp", {"seed": True}),
    ],
)
def test_bad_options_raise_a_method_error(tiny, method, opts):
    with pytest.raises(MethodError, match="window|must be"):
        run(tiny, image(11), [1], method, **opts)


@pytest.mark.parametrize(
    ("classes", "contrast", "versus"), [([10], None, None), ([-1], None, None), ([1], "pair", 99), ([1], "pair", None)]
)
def test_bad_classes_raise_a_method_error(tiny, classes, contrast, versus):
    with pytest.raises(MethodError):
        compute_cams(tiny, image(12), classes, "gradcam", "features.4", contrast, versus)


def test_bad_shapes_raise_a_method_error(tiny):
    with pytest.raises(MethodError, match="batch, channels"):
        compute_cams(tiny, image(13)[0], [1], "gradcam", "features.4")
    with pytest.raises(MethodError, match="classes must be"):
        compute_cams(tiny, image(13), torch.tensor([[1], [2]]), "gradcam", "features.4")


def test_eval_mode_restores_flags_when_calls_overlap(tiny):
    model = copy.deepcopy(tiny).train()
    model.features[1].eval()
    flags = [m.training for m in model.modules()]
    with eval_mode(model):
        with eval_mode(model):  # a second call (another thread) comes in while the first is running
            assert not any(m.training for m in model.modules())
        assert not any(m.training for m in model.modules())  # ...and leaves first: still eval for the first
    assert [m.training for m in model.modules()] == flags


@pytest.mark.parametrize("first", ["teaching.cams.activation", "teaching.cams.smooth", "teaching.cams.guided"])
def test_importing_any_engine_module_registers_every_method(first):
    """In a fresh interpreter; this process imported teaching.cams first."""
    code = f"import {first}; from teaching.cams import METHODS; print(' '.join(sorted(METHODS)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert set(OURS) <= set(out)
    assert set(OURS) <= set(METHODS)


# --- classes left to the prediction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "passes"),
    [("gradcam", 1), ("cam", 1), ("layercam", 1), ("contrastive", 1), ("occlusion", None), ("guided_backprop", None)],
)
def test_classes_left_to_the_prediction_come_from_the_same_pass(tiny, method, passes):
    """classes=None: the top_k classes of each image; the gradient methods and CAM read them from their own forward
    pass (one pass in all), the others predict them first. The maps are those of the same classes given."""
    x = image(3, batch=2)
    with torch.no_grad():
        expected = tiny(x).topk(3, dim=1).indices  # (2, 3): per image
    calls = []
    handle = tiny.register_forward_hook(lambda *_: calls.append(1))
    try:
        out = run(tiny, x, None, method, top_k=3)
    finally:
        handle.remove()
    assert torch.equal(out.classes, expected)
    if passes is not None:
        assert len(calls) == passes
    given = run(tiny, x, expected, method)
    torch.testing.assert_close(out.raw, given.raw, rtol=1e-5, atol=1e-6)
    assert torch.equal(given.classes, expected)
    with pytest.raises(MethodError, match=r"top_k=0 must be a whole number >= 1"):
        run(tiny, x, None, method, top_k=0)
