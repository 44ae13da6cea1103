"""Parity with the peers, on seeded random-weight models and on the real lite0 weights with the fixture photos.

Oracles (docs/ANCHORS.md): pytorch-grad-cam 1.5.7 for Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM and Score-CAM
(normalised and upsampled maps); Captum 0.9.0 for raw Grad-CAM, occlusion and its hand-checkable golden values;
TorchCAM 0.5.0 for Smooth Grad-CAM++ fed the same noise. Also: contrastive maps on the elephants, no hook left
behind (also after errors), `training` flags restored, and two threads sharing one model.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerGradCam
from captum.attr import Occlusion as CaptumOcclusion
from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
from helpers import TinyNet
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torchcam.methods import SmoothGradCAMpp as TorchCamSmoothGradCAMpp

from teaching.cams import METHODS, compute_cams, find_layer
from teaching.cams.maps import upsample
from teaching.cams.smooth import noise_samples
from teaching.errors import MethodError
from teaching.images import load_image
from teaching.models import load_backbone

PEERS = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM}
ELEPHANTS = {"African_elephant": 386, "Indian_elephant": 385, "tusker": 101}


def seeded(build: type[nn.Module] | object, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return build(**kwargs).eval()  # type: ignore[operator]


def image(seed: int, size: int | tuple[int, int] = 96, batch: int = 1) -> torch.Tensor:
    h, w = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def top(model: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """The k most probable classes of each image, (B, k): on random weights their maps are seldom blank."""
    with torch.no_grad():
        return model(x).topk(k).indices


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    return seeded(torchvision.models.resnet18)


@pytest.fixture(scope="module")
def vgg11() -> nn.Module:
    return seeded(torchvision.models.vgg11)


def peer_maps(peer: type, model: nn.Module, layer: str, x: torch.Tensor, classes: list[int], **attrs: object):
    """pytorch-grad-cam's normalised, upsampled maps (k, H, W) of one image: the image repeated once per class."""
    with peer(model=model, target_layers=[find_layer(model, layer)]) as cam:
        for name, value in attrs.items():
            setattr(cam, name, value)
        ref = cam(input_tensor=x.repeat(len(classes), 1, 1, 1), targets=[ClassifierOutputTarget(c) for c in classes])
    return torch.from_numpy(ref)


def relative(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).detach().abs().max() / ref.detach().abs().max())


def our_maps(model: nn.Module, x: torch.Tensor, classes: list[int], method: str, layer: str, **opts: object):
    """Our maps of image 0, normalised and upsampled like the peer's, (k, H, W); none may be blank."""
    raw = compute_cams(model, x, classes, method, layer, **opts).raw
    assert bool((raw.amax((-2, -1)) > 0).all()), f"{method}: a blank map cannot show parity"
    return upsample(raw, (x.shape[-2], x.shape[-1]))[0]


# --- pytorch-grad-cam -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(PEERS))
@pytest.mark.parametrize(("arch", "layer"), [("resnet18", "layer4"), ("vgg11", "features.19")])
def test_gradient_family_matches_pytorch_grad_cam(request, arch, layer, method):
    model = request.getfixturevalue(arch)
    x = image(1)
    classes = top(model, x, 3)[0].tolist()
    ours, ref = our_maps(model, x, classes, method, layer), peer_maps(PEERS[method], model, layer, x, classes)
    diff = float((ours - ref).abs().max())
    print(f"{arch} {method}: max |ours - pytorch-grad-cam| = {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.parametrize("method", list(PEERS))
@pytest.mark.parametrize(("layer", "closed_form"), [("layer4", 1.0), ("layer3", 0.0)])
def test_with_the_head_given_the_gradient_family_still_matches_pytorch_grad_cam(resnet18, layer, closed_form, method):
    """layer4 feeds the pool: gradients in closed form; layer3 does not: the engine falls back to the backward."""
    x = image(1)
    classes = top(resnet18, x, 3)[0].tolist()
    out = compute_cams(resnet18, x, classes, method, layer, linear=resnet18.fc)
    assert out.timings["closed_form"] == closed_form and bool((out.raw.amax((-2, -1)) > 0).all())
    diff = float((upsample(out.raw, (96, 96))[0] - peer_maps(PEERS[method], resnet18, layer, x, classes)).abs().max())
    print(f"resnet18 {layer} {method}, head given: max |ours - pytorch-grad-cam| = {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.slow
def test_gradient_family_matches_pytorch_grad_cam_on_resnet50():
    model = seeded(torchvision.models.resnet50)
    x = image(2, 224)
    classes = top(model, x, 3)[0].tolist()
    for method, peer in PEERS.items():
        diff = float(
            (our_maps(model, x, classes, method, "layer4") - peer_maps(peer, model, "layer4", x, classes)).abs().max()
        )
        print(f"resnet50 {method}: max |ours - pytorch-grad-cam| = {diff:.2e}")
        assert diff < 1e-4


@pytest.mark.slow
def test_scorecam_matches_pytorch_grad_cam_on_resnet18(resnet18):
    x = image(3, 32)
    classes = top(resnet18, x, 2)[0].tolist()
    ours = our_maps(resnet18, x, classes, "scorecam", "layer2", batch_size=32)
    ref = peer_maps(ScoreCAM, resnet18, "layer2", x, classes, batch_size=32)
    diff = float((ours - ref).abs().max())
    print(f"resnet18 layer2 scorecam: max |ours - pytorch-grad-cam| = {diff:.2e}")
    assert diff < 1e-4


def test_scorecam_skips_flat_channels_and_still_matches_pytorch_grad_cam():
    model, x, classes = TinyNet(dead=6), image(4, 24, batch=2), [1, 7]
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    try:
        raw = compute_cams(model, x, classes, "scorecam", "features.4", batch_size=5).raw
    finally:
        handle.remove()
    assert sum(seen) == 2 + 1 + 2 * 10  # the clean batch, the blank input once, 10 live channels per image
    for b in range(2):
        ref = peer_maps(ScoreCAM, model, "features.4", x[b : b + 1], classes, batch_size=5)
        diff = float((upsample(raw[b : b + 1], (24, 24))[0] - ref).abs().max())
        print(f"tiny net scorecam, 6 of 16 channels flat: max |ours - pytorch-grad-cam| = {diff:.2e}")
        assert diff < 1e-4


# --- Captum -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "layer"), [("resnet18", "layer4"), ("vgg11", "features.19")])
def test_raw_gradcam_matches_captum_layer_gradcam(request, arch, layer):
    model = request.getfixturevalue(arch)
    x = image(5, batch=2)
    table = top(model, x, 2)  # per-image targets
    raw = compute_cams(model, x, table, "gradcam", layer).raw
    attr = LayerGradCam(model, find_layer(model, layer))
    for j in range(2):
        ref = attr.attribute(x, target=table[:, j].tolist(), relu_attributions=True)[:, 0]
        assert bool((ref.amax((-2, -1)) > 0).all())
        print(f"{arch} raw gradcam: max |ours - Captum| / max |Captum| = {relative(raw[:, j], ref):.2e}")
        torch.testing.assert_close(raw[:, j], ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("layer", "golden"), [("conv1", [[11.25, 13.5], [20.25, 22.5]]), ("relu1", [[0, 4], [28, 32.5]])]
)
def test_gradcam_golden_values_of_captum(layer, golden):
    model = BasicModel_ConvNet_One_Conv()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    raw = compute_cams(model, x, [0], "gradcam", layer).raw[0, 0]
    torch.testing.assert_close(raw, torch.tensor(golden), rtol=0, atol=1e-5)


def lowered_most(model: nn.Module, x: torch.Tensor, k: int) -> list[int]:
    """The k classes whose scores drop most when the input is blanked: their occlusion maps are not blank."""
    with torch.no_grad():
        return (model(x) - model(torch.zeros_like(x))).sum(0).topk(k).indices.tolist()


@pytest.mark.parametrize(("size", "window", "stride"), [((30, 36), 7, 3), (64, None, None)])
def test_occlusion_matches_captum(size, window, stride):
    model, x = TinyNet(), image(6, size, batch=2)
    classes = lowered_most(model, x, 2)
    opts = {} if window is None else {"window": window, "stride": stride}
    raw = compute_cams(model, x, classes, "occlusion", **opts).raw  # (B, k, H, W)
    w = window or round(64 / 7)
    s = stride or w // 2
    for j, c in enumerate(classes):
        ref = CaptumOcclusion(model).attribute(
            x, sliding_window_shapes=(3, w, w), strides=(3, s, s), baselines=0, target=c, perturbations_per_eval=256
        )
        mean = ref.sum(1) / 3  # the window spans the 3 channels: each holds the mean drop of the score
        assert bool((mean.amax((-2, -1)) > 0).all())
        diff = float((raw[:, j] - F.relu(mean)).abs().max())
        print(f"occlusion {tuple(x.shape[-2:])} window {w} stride {s}: max |ours - Captum| = {diff:.2e}")
        torch.testing.assert_close(raw[:, j], F.relu(mean), rtol=1e-5, atol=1e-5)


# --- TorchCAM ---------------------------------------------------------------------------------------------------


class Injected:
    """Stands in for TorchCAM's noise distribution: hands out given noise tensors in order."""

    def __init__(self, noise: torch.Tensor) -> None:
        self.noise = list(noise)

    def sample(self, _size: torch.Size) -> torch.Tensor:
        return self.noise.pop(0)


def test_smoothgradcampp_matches_torchcam_with_the_same_noise(resnet18):
    x, n, std = image(7, 48, batch=2), 4, 0.3
    classes = top(resnet18, x[:1], 2)[0].tolist()
    raw = compute_cams(resnet18, x, classes, "smoothgradcampp", "layer4", n_samples=n, std=std, seed=11).raw
    noise = noise_samples(x, n, std, 11).expand(n, *x.shape)  # (n, B, 3, H, W): the draw shared by both images
    for j, c in enumerate(classes):
        with TorchCamSmoothGradCAMpp(resnet18, "layer4", num_samples=n, std=std, input_shape=(3, 48, 48)) as cam:
            cam._distrib = Injected(noise)
            resnet18(x)
            ref = cam(class_idx=c, normalized=False)[0]
        assert bool((ref.amax((-2, -1)) > 0).all())
        print(f"smoothgradcampp: max |ours - TorchCAM| / max |TorchCAM| = {relative(raw[:, j], ref):.2e}")
        torch.testing.assert_close(raw[:, j], ref, rtol=1e-4, atol=1e-6)


# --- real weights and photos ------------------------------------------------------------------------------------


def photos(fixtures: Path, folders: list[str], per_folder: int = 2) -> list[Path]:
    return [p for f in folders for p in sorted((fixtures / "species" / f).iterdir())[:per_folder]]


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    """The real lite0 weights, in a copy whose weights require grad (pytorch-grad-cam calls `backward`)."""
    return copy.deepcopy(load_backbone("efficientnet_lite0", device="cpu").model).requires_grad_(True)


@pytest.mark.fixtures
@pytest.mark.slow
def test_lite0_real_weights_match_pytorch_grad_cam_on_photos(fixtures_dir, lite0):
    bb = load_backbone("efficientnet_lite0", device="cpu")
    for path in photos(fixtures_dir, ["African_elephant", "great_white_shark", "monarch"], per_folder=1):
        x, _ = bb.preprocess(load_image(path))
        with torch.no_grad():
            classes = lite0(x)[0].topk(3).indices.tolist()  # the top 3: their maps are not blank
        for method in ("gradcam", "gradcampp"):
            diff = float(
                (our_maps(lite0, x, classes, method, "bn2") - peer_maps(PEERS[method], lite0, "bn2", x, classes))
                .abs()
                .max()
            )
            print(f"lite0 {method} {path.name} {classes}: max |ours - pytorch-grad-cam| = {diff:.2e}")
            assert diff < 1e-4


@pytest.mark.fixtures
@pytest.mark.slow
def test_lite0_gradients_in_closed_form_match_the_backward_and_pytorch_grad_cam_on_photos(fixtures_dir, lite0):
    bb = load_backbone("efficientnet_lite0", device="cpu")
    runs = [(m, None) for m in PEERS] + [("contrastive", "group"), ("contrastive", "pair")]
    for path in photos(fixtures_dir, ["African_elephant", "great_white_shark", "monarch"], per_folder=1):
        x, _ = bb.preprocess(load_image(path))
        with torch.no_grad():
            ranked = lite0(x)[0].topk(4).indices.tolist()
        classes, versus = ranked[:3], ranked[3]
        for method, contrast in runs:
            pair = versus if contrast == "pair" else None
            closed = compute_cams(lite0, x, classes, method, "bn2", contrast, pair, lite0.classifier)
            grad = compute_cams(lite0, x, classes, method, "bn2", contrast, pair)
            assert closed.timings["closed_form"] == 1.0 and bool((grad.raw.amax((-2, -1)) > 0).all())
            side = (x.shape[-2], x.shape[-1])
            ours = upsample(closed.raw, side)[0]
            diff = float((ours - upsample(grad.raw, side)[0]).abs().max())
            print(f"lite0 {method} {contrast} {path.name}: max |closed form - backward| = {diff:.1e}")
            assert diff < 2e-6
            if method in PEERS:
                diff = float((ours - peer_maps(PEERS[method], lite0, "bn2", x, classes)).abs().max())
                print(f"lite0 {method} {path.name}, closed form: max |ours - pytorch-grad-cam| = {diff:.2e}")
                assert diff < 1e-4


def mean_pairwise_r(maps: torch.Tensor) -> float:
    """Mean Pearson correlation between the k maps (k, h, w) of one image."""
    r = np.corrcoef(maps.flatten(1).numpy())
    return float(r[np.triu_indices(len(r), 1)].mean())


@pytest.mark.fixtures
@pytest.mark.slow
def test_contrastive_maps_separate_the_elephants(fixtures_dir):
    bb = load_backbone("efficientnet_lite0", device="cpu")
    classes = list(ELEPHANTS.values())
    for folder, target in ELEPHANTS.items():
        for path in photos(fixtures_dir, [folder]):
            x, _ = bb.preprocess(load_image(path))
            plain = compute_cams(bb.model, x, classes, "gradcam", "bn2").raw[0]
            contrast = compute_cams(bb.model, x, classes, "contrastive", "bn2").raw[0]
            j = classes.index(target)
            r_plain, r_contrast = mean_pairwise_r(plain), mean_pairwise_r(contrast)
            r_self = float(np.corrcoef(plain[j].flatten(), contrast[j].flatten())[0, 1])
            print(f"{path.name}: mean r plain {r_plain:.3f}, contrastive {r_contrast:.3f}; own class {r_self:.3f}")
            assert r_plain > 0.8  # measured 0.88 to 0.98: plain Grad-CAM shows the same place for all three
            assert r_contrast < min(0.2, r_plain - 0.6)  # measured -0.22 to -0.03
            assert (
                r_self < 0.95
            )  # measured -0.02 to 0.85: the contrastive map of the photo's own class is not its plain map


# --- hooks, modes and threads -----------------------------------------------------------------------------------


def hook_count(model: nn.Module) -> int:
    from torch.nn.modules import module as torch_module

    per_module = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )
    global_hooks = (
        torch_module._global_forward_hooks,
        torch_module._global_forward_pre_hooks,
        torch_module._global_backward_hooks,
        torch_module._global_backward_pre_hooks,
    )
    return per_module + sum(len(h) for h in global_hooks)


class Boom(nn.Module):
    """A head that fails after the target layer has run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_no_hook_left_and_modes_restored_also_after_errors(method):
    model = TinyNet()
    model.train()
    model.features[1].eval()  # mixed flags must come back as they were
    flags = [m.training for m in model.modules()]
    x, opts = image(8, 16), {"linear": model.fc, "batch_size": 256}
    before = hook_count(model)

    def check() -> None:
        assert hook_count(model) == before
        assert [m.training for m in model.modules()] == flags

    out = compute_cams(model, x, [1, 2], method, "features.4", **opts)
    assert out.raw.shape[:2] == (1, 2) and bool(torch.isfinite(out.raw).all())
    check()
    with pytest.raises(MethodError, match="out of range"):
        compute_cams(model, x, [1, 10], method, "features.4", **opts)
    check()
    model.fc = Boom()
    with pytest.raises((RuntimeError, MethodError)):
        compute_cams(model, x, [1, 2], method, "features.4", **opts)
    check()


THREAD_RUNS = {  # method: (input side, layer, options), kept small for two shared cores
    "gradcam": (48, "layer3", {}),
    "gradcampp": (48, "layer3", {}),
    "contrastive": (48, "layer3", {}),
    "smoothgradcampp": (32, "layer3", {}),
    "cam": (48, "layer4", {}),
    "scorecam": (24, "features.4", {}),  # on TinyNet, as occlusion
    "occlusion": (24, "", {"window": 6, "stride": 3}),
}


@pytest.mark.parametrize("method", list(THREAD_RUNS))
def test_two_threads_on_one_model_give_the_sequential_results(resnet18, method):
    size, layer, opts = THREAD_RUNS[method]
    model = TinyNet() if method in ("scorecam", "occlusion") else resnet18
    jobs = [(image(9, size), [3, 8]), (image(10, size, batch=2), [2, 5, 9])]
    if method == "occlusion":
        jobs = [(x, lowered_most(model, x, len(c))) for x, c in jobs]

    def run(job: tuple[torch.Tensor, list[int]]) -> torch.Tensor:
        return compute_cams(model, job[0], job[1], method, layer, linear=model.fc, **opts).raw

    expected = [run(job) for job in jobs]
    assert all(bool(e.amax() > 0) for e in expected)
    for _ in range(3):
        for got, want in zip(together(run, jobs), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert hook_count(model) == 0 and not model.training


def together(fn, args: list) -> list:
    """fn(a) for every a, each in its own thread, all released at once by a barrier; errors are raised here."""
    barrier, results, errors = threading.Barrier(len(args)), [None] * len(args), []

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(args[i])
        except Exception as exc:  # re-raised in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# --- Finer-CAM (pytorch-grad-cam 1.5.7) ---------------------------------------------------------------------------


def finer_peer_maps(model: nn.Module, layer: str, x: torch.Tensor, classes: list[int], **kwargs: object):
    """pytorch-grad-cam's FinerCAM maps (k, H, W) of one image, one call per target class (its `target_idx`)."""
    from pytorch_grad_cam import FinerCAM as PeerFinerCAM

    maps = []
    with PeerFinerCAM(model, [find_layer(model, layer)]) as cam:
        for c in classes:
            leaf = x.detach().clone().requires_grad_(True)  # frozen weights (lite0): the graph starts at the input
            maps.append(torch.from_numpy(cam(input_tensor=leaf, target_idx=c, **kwargs))[0])
    return torch.stack(maps)


@pytest.mark.parametrize(("arch", "layer"), [("resnet18", "layer4"), ("vgg11", "features.19")])
def test_finercam_matches_pytorch_grad_cam(request, arch, layer):
    model = request.getfixturevalue(arch)
    x = image(2)
    classes = top(model, x, 3)[0].tolist()
    ours, ref = our_maps(model, x, classes, "finercam", layer), finer_peer_maps(model, layer, x, classes)
    diff = float((ours - ref).abs().max())
    print(f"{arch} finercam: max |ours - pytorch-grad-cam| = {diff:.2e}")
    assert diff < 1e-4
    alpha = our_maps(model, x, classes, "finercam", layer, alpha=0.6, n_compare=2)
    ref_alpha = finer_peer_maps(model, layer, x, classes, alpha=0.6, comparison_categories=[1, 2])
    assert float((alpha - ref_alpha).abs().max()) < 1e-4
    assert float((alpha - ours).abs().max()) > 1e-3  # the options change the maps: the comparison means something


def test_finercam_matches_pytorch_grad_cam_on_lite0_and_an_elephant(fixtures_dir):
    bb = load_backbone("efficientnet_lite0", device="cpu")
    photo = load_image(next((fixtures_dir / "species" / "African_elephant").glob("*")))
    x, _ = bb.preprocess(photo)
    classes = list(ELEPHANTS.values())
    ours, ref = our_maps(bb.model, x, classes, "finercam", "bn2"), finer_peer_maps(bb.model, "bn2", x, classes)
    assert float((ours - ref).abs().max()) < 1e-4
    with pytest.raises(MethodError, match="chooses its own comparison"):
        compute_cams(bb.model, x, classes, "finercam", "bn2", contrast="group")
