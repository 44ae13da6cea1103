"""The accelerated path (teaching.accel): same maps as the float32 engine within the stated tolerance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from teaching.cams import compute_cams
from teaching.cams.accel import TOLERANCE, FastCAM, accelerate, class_table, prepare_model
from teaching.cams.maps import upsample
from teaching.errors import MethodError
from teaching.models import load_backbone

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def smooth_images(n: int, seed: int = 0, size: int = 224) -> torch.Tensor:
    """Seeded photo-like inputs in [-1, 1] (the lite0 normalisation): bicubic upsampling of 8x8 noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0", device="cpu")


def normalised(raw: torch.Tensor) -> torch.Tensor:
    return upsample(raw, (224, 224))


@pytest.mark.parametrize("method", ["gradcam", "cam"])
def test_bfloat16_channels_last_within_tolerance(lite0, method):
    model = lite0.model
    x = smooth_images(2)
    with torch.no_grad():
        top = model(x).topk(3).indices  # (2, 3) each image's own top-3
    linear = model.classifier if method == "cam" else None
    ref = compute_cams(model, x, top, method, "bn2", linear=linear)
    fast = FastCAM(model, "bn2", method, linear=linear, dtype=torch.bfloat16, channels_last=True, graphs=False)
    out = fast(x, top)
    assert out.raw.dtype == torch.float32 and out.raw.shape == ref.raw.shape == (2, 3, 7, 7)
    assert ref.raw.amax((2, 3)).min() > 0  # no blank map: the comparison means something
    diff = (normalised(out.raw) - normalised(ref.raw)).abs().max().item()
    assert 1e-4 < diff <= TOLERANCE[torch.bfloat16]  # lower precision moved the maps, within the stated bound
    assert torch.equal(out.logits.argmax(1), ref.logits.argmax(1))


def test_channels_last_float32_matches_engine(lite0):
    x = smooth_images(1, seed=1)
    ref = compute_cams(lite0.model, x, [1, 2, 3], "gradcampp", "bn2")
    out = FastCAM(lite0.model, "bn2", "gradcampp", dtype=None, channels_last=True, graphs=False)(x, [1, 2, 3])
    torch.testing.assert_close(out.raw, ref.raw, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.logits, ref.logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "cam", "guided_gradcam"])
def test_fastcam_returns_every_field_the_engine_returns(lite0, method):
    """FastCAM once built CamOutput by position and dropped `signed` and `classes` (issue 11)."""
    x = smooth_images(2, seed=2)
    linear = lite0.head(method)
    ref = compute_cams(lite0.model, x, None, method, "bn2", linear=linear, top_k=2)
    out = FastCAM(lite0.model, "bn2", method, linear=linear, dtype=None, channels_last=True, graphs=False)(
        x, ref.classes
    )
    for name in ("raw", "logits", "signed", "attributions", "classes"):
        mine, theirs = getattr(out, name), getattr(ref, name)
        assert (mine is None) == (theirs is None), name
        if theirs is not None:
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
    assert out.layer == ref.layer and out.classes is not None
    assert (ref.signed is not None) == (method != "guided_gradcam")  # the methods linear in the score keep it


def test_accelerate_gives_the_head_by_the_same_rule_as_explain(lite0):
    """One head rule (Backbone.head) for api, accel and evaluation: every gradient method gets the closed form."""
    for method in ("gradcam", "gradcampp", "layercam", "cam"):
        assert accelerate(lite0, method).linear is lite0.model.classifier
    for method in ("scorecam", "guided_gradcam", "smoothgradcampp"):
        assert accelerate(lite0, method).linear is None


def test_original_model_untouched(lite0):
    model = lite0.model
    fast = FastCAM(model, "bn2", "gradcam", dtype=torch.bfloat16, channels_last=True, graphs=False)
    fast(smooth_images(1), [5])
    assert fast.model is not model
    assert model.conv_stem.weight.dtype == torch.float32
    assert model.conv_stem.weight.is_contiguous()
    assert fast.model.conv_stem.weight.dtype == torch.bfloat16
    assert fast.model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.model.bn2.weight.dtype == torch.float32  # batch norm stays float32 under autocast
    assert not any(m._forward_hooks for m in model.modules())
    assert not any(m._forward_hooks for m in fast.model.modules())


def test_prepare_model_without_changes_returns_the_model(lite0):
    assert prepare_model(lite0.model, None, False) is lite0.model


def test_accelerate_on_cpu_is_the_plain_engine(lite0):
    x = smooth_images(1, seed=2)
    fast = accelerate(lite0, "cam")
    assert fast.model is lite0.model and fast.dtype is None and not fast.graphs
    out = fast(x, [10, 20])
    ref = compute_cams(lite0.model, x, [10, 20], "cam", "bn2", linear=lite0.model.classifier)
    assert torch.equal(out.raw, ref.raw)


def test_class_table_shapes():
    x = torch.zeros(2, 3, 8, 8)
    assert class_table([4, 7], x).tolist() == [[4, 7], [4, 7]]
    assert class_table(torch.tensor([[1], [2]]), x).tolist() == [[1], [2]]
    with pytest.raises(MethodError, match="table"):
        class_table(torch.tensor([[1], [2], [3]]), x)


def test_replayed_classes_are_range_checked(lite0):
    fast = FastCAM(lite0.model, "bn2", dtype=None, channels_last=False, graphs=False)
    fast.num_classes = 1000  # what a capture records; replays skip the engine's own check
    fast._check_classes(torch.tensor([[0, 999]]))
    with pytest.raises(MethodError, match="class index 1000 is out of range"):
        fast._check_classes(torch.tensor([[3, 1000]]))
    with pytest.raises(MethodError, match="class index -1"):
        fast._check_classes(torch.tensor([[-1, 3]]))


def test_rejects_other_dtypes(lite0):
    with pytest.raises(MethodError, match="dtype"):
        FastCAM(lite0.model, "bn2", dtype=torch.float64)


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_graph_replay_matches_eager(dtype):
    backbone = load_backbone("efficientnet_lite0", device="cuda")
    x = smooth_images(2).cuda()
    fast = FastCAM(backbone.model, "bn2", "gradcam", dtype=dtype, graphs=True)
    ref = compute_cams(backbone.model, x, [1, 2, 3], "gradcam", "bn2")
    first = fast(x, [1, 2, 3])  # captures
    again = fast(x, [1, 2, 3])  # replays
    assert len(fast._graphs) == 1 and next(iter(fast._graphs.values())) is not None
    torch.testing.assert_close(again.raw, first.raw)
    diff = (normalised(again.raw) - normalised(ref.raw)).abs().max().item()
    assert diff <= TOLERANCE[dtype]
    other = fast(x, [7, 8, 9])  # same shape and k: the same graph with new classes
    ref_other = compute_cams(backbone.model, x, [7, 8, 9], "gradcam", "bn2")
    assert len(fast._graphs) == 1
    assert (normalised(other.raw) - normalised(ref_other.raw)).abs().max().item() <= TOLERANCE[dtype]
    with pytest.raises(MethodError, match="out of range"):
        fast(x, [1, 2, 1000])


@cuda
def test_cuda_closed_form_k1000_graph():
    backbone = load_backbone("efficientnet_lite0", device="cuda")
    x = smooth_images(1).cuda()
    fast = accelerate(backbone, "cam")
    out = fast(x, list(range(1000)))
    ref = compute_cams(backbone.model, x, list(range(1000)), "cam", "bn2", linear=backbone.model.classifier)
    assert out.raw.shape == (1, 1000, 7, 7)
    assert (normalised(out.raw) - normalised(ref.raw)).abs().max().item() <= TOLERANCE[torch.float16]
