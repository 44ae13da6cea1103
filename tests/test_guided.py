"""Guided Backpropagation and Guided Grad-CAM: golden values, parity with Captum where Captum is right, and an
explicit reference on the nets where the peers are wrong (ReLU6, functional and in-place ReLU)."""

from __future__ import annotations

import copy
import math
import threading
import types
from collections.abc import Callable

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from captum.attr import GuidedGradCam as CaptumGuidedGradCam
from captum.testing.helpers.basic_models import BasicModel_ConvNet_One_Conv
from torch import nn

from teaching.cams import GuidedSwitch, compute_cams, guided_backprop, guided_relus
from teaching.errors import MethodError

# --- an explicit reference: every activation replaced by a module whose backward is written out --------------


class RefGuidedClip(torch.autograd.Function):
    """clamp(x, 0, upper), backward max(g, 0) * (0 < x < upper): written independently of teaching.guided."""

    @staticmethod
    def forward(ctx, x, upper):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        ctx.upper = upper
        return torch.clamp(x, 0.0, upper)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return torch.where((x > 0) & (x < ctx.upper), torch.clamp(grad, min=0.0), torch.zeros_like(grad)), None


class RefGuidedReLU(nn.Module):
    def __init__(self, upper: float = math.inf) -> None:
        super().__init__()
        self.upper = upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return RefGuidedClip.apply(x, self.upper)


def swap_relu_modules(model: nn.Module) -> nn.Module:
    """A deep copy where every nn.ReLU / nn.ReLU6 module is a RefGuidedReLU."""
    ref = copy.deepcopy(model)
    for parent in list(ref.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, RefGuidedReLU(6.0))
            elif isinstance(child, nn.ReLU):
                setattr(parent, name, RefGuidedReLU())
    return ref


def densenet_reference(model: nn.Module) -> nn.Module:
    ref = swap_relu_modules(model)
    final_relu = RefGuidedReLU()

    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(final_relu(self.features(x)), (1, 1))  # torchvision's F.relu(inplace=True)
        return self.classifier(torch.flatten(out, 1))

    ref.forward = types.MethodType(forward, ref)  # type: ignore[method-assign]
    return ref


def inception_reference(model: nn.Module) -> nn.Module:
    ref = swap_relu_modules(model)
    relu = RefGuidedReLU()
    for module in ref.modules():
        if type(module).__name__ == "BasicConv2d":  # conv, bn, then torchvision's F.relu(inplace=True)
            module.forward = types.MethodType(lambda self, x: relu(self.bn(self.conv(x))), module)  # type: ignore[method-assign]
    return ref


RELU_NAMES = {"relu", "relu_", "relu6", "relu6_", "hardtanh", "hardtanh_"}


class CountActivations(torch.overrides.TorchFunctionMode):
    """Counts the torch-level ReLU-family calls of a forward pass (the reference must make none)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.calls += getattr(func, "__name__", "") in RELU_NAMES
        return func(*args, **(kwargs or {}))


def input_grads(model: nn.Module, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """(B, k, C, H, W) gradients by one backward per image and class, the slow plain way."""
    out = torch.zeros(x.shape[0], len(classes), *x.shape[1:])
    for b in range(x.shape[0]):
        for j, c in enumerate(classes):
            xb = x[b : b + 1].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(xb)[0, c], xb)
            out[b, j] = g[0]
    return out


def captum_guided(model: nn.Module, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    gb = CaptumGuidedBackprop(model)
    return torch.stack([torch.cat([gb.attribute(x[b : b + 1], target=c) for c in classes]) for b in range(x.shape[0])])


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4) -> None:
    assert expected.abs().max() > 0, "the reference is all zero: nothing is compared"
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * float(expected.abs().max()))


def seeded(build: Callable[[], nn.Module], size: int, batch: int = 2) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = build().eval()
    return model, torch.randn(batch, 3, size, size)


# --- golden values (Captum's tiny test model, hand-checkable) ----------------------------------------------------

GOLDEN_INPUT = torch.arange(16).view(1, 1, 4, 4).float()


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_backprop_golden(inplace: bool) -> None:
    model = BasicModel_ConvNet_One_Conv(inplace=inplace)
    expected = torch.tensor([[0.0, 1, 1, 1], [1, 3, 3, 2], [1, 3, 3, 2], [1, 2, 2, 1]])
    torch.testing.assert_close(guided_backprop(model, GOLDEN_INPUT, [0])[0, 0, 0], expected)


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_gradcam_golden_nearest(inplace: bool) -> None:
    model = BasicModel_ConvNet_One_Conv(inplace=inplace)
    out = compute_cams(model, GOLDEN_INPUT, [0], "guided_gradcam", layer="relu1", interpolate="nearest")
    expected = torch.tensor([[0.0, 0, 4, 4], [0, 0, 12, 8], [28, 84, 97.5, 65], [28, 56, 65, 32.5]])
    assert out.attributions is not None
    torch.testing.assert_close(out.attributions[0, 0, 0], expected)
    torch.testing.assert_close(out.raw[0, 0], expected)  # one channel, all >= 0: raw = |attribution|
    assert out.layer == "relu1"


def test_guided_gradcam_bilinear_matches_captum_on_tiny_model() -> None:
    model = BasicModel_ConvNet_One_Conv()
    out = compute_cams(model, GOLDEN_INPUT, [0], "guided_gradcam", layer="relu1")
    ref = CaptumGuidedGradCam(model, model.relu1).attribute(GOLDEN_INPUT, target=0, interpolate_mode="bilinear")
    assert out.attributions is not None
    assert_close_scaled(out.attributions[:, 0], ref, rtol=1e-6)


def test_unknown_interpolation_is_a_method_error() -> None:
    with pytest.raises(MethodError, match="interpolation"):
        compute_cams(BasicModel_ConvNet_One_Conv(), GOLDEN_INPUT, [0], "guided_gradcam", layer="relu1", interpolate="x")


# --- every form of ReLU ------------------------------------------------------------------------------------------


class EveryRelu(nn.Module):
    """One conv before each of the eleven ways torch code writes a ReLU or ReLU6."""

    FORMS: list[tuple[str, float]] = [
        ("nn.ReLU", math.inf),
        ("nn.ReLU(inplace)", math.inf),
        ("nn.ReLU6(inplace)", 6.0),
        ("F.relu6", 6.0),
        ("F.hardtanh(0, 6)", 6.0),
        ("F.relu(inplace)", math.inf),
        ("torch.relu", math.inf),
        ("Tensor.relu", math.inf),
        ("Tensor.relu_ as a statement", math.inf),
        ("torch.relu_", math.inf),
        ("F.relu(inplace) result unused", math.inf),
    ]

    def __init__(self, reference: bool = False) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, 3, 3, padding=1) for _ in self.FORMS)
        self.relu, self.relu_inplace, self.relu6 = nn.ReLU(), nn.ReLU(inplace=True), nn.ReLU6(inplace=True)
        self.reference = reference
        self.head = nn.Linear(3 * 8 * 8, 5)

    def act(self, i: int, h: torch.Tensor) -> torch.Tensor:
        if self.reference:
            return RefGuidedClip.apply(h, self.FORMS[i][1])
        steps: list[Callable[[torch.Tensor], torch.Tensor]] = [
            self.relu,
            self.relu_inplace,
            self.relu6,
            F.relu6,
            lambda t: F.hardtanh(t, 0.0, 6.0),
            lambda t: F.relu(t, inplace=True),
            torch.relu,
            lambda t: t.relu(),
            lambda t: (t.relu_(), t)[1],
            torch.relu_,
            lambda t: (F.relu(t, inplace=True), t)[1],
        ]
        return steps[i](h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, conv in enumerate(self.convs):
            h = self.act(i, conv(h) * 4)  # * 4: some values above 6, so the ReLU6 clip matters
        return self.head(F.hardtanh(h, -1.0, 1.0).flatten(1))  # not a ReLU: must keep its plain gradient


def every_relu_pair() -> tuple[EveryRelu, EveryRelu, torch.Tensor]:
    torch.manual_seed(0)
    model = EveryRelu().eval()
    ref = copy.deepcopy(model)
    ref.reference = True
    return model, ref, torch.randn(2, 3, 8, 8)


def test_every_relu_form_is_guided() -> None:
    model, ref, x = every_relu_pair()
    classes = [0, 3, 4]
    expected = input_grads(ref, x, classes)
    assert_close_scaled(guided_backprop(model, x, classes), expected, rtol=1e-5)
    assert rel_diff(input_grads(model, x, classes), expected) > 0.1  # the plain gradient is another thing
    with torch.no_grad():
        h = x
        for i in range(2):
            h = model.act(i, model.convs[i](h) * 4)
        assert (model.convs[2](h) * 4 > 6).any()  # the ReLU6 clip is exercised


def test_every_relu_form_is_caught_exactly_once() -> None:
    model, _, x = every_relu_pair()
    with torch.enable_grad(), guided_relus():
        out = model(x.requires_grad_(True))
    names: list[str] = []
    seen: set[object] = set()
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack.extend(fn for fn, _ in node.next_functions)
    assert names.count("GuidedClipBackward") == len(EveryRelu.FORMS)
    assert not [n for n in names if n.startswith("Relu")]
    assert names.count("HardtanhBackward0") == 1  # the final hardtanh(-1, 1) is not a ReLU and is left alone


def test_inplace_forms_return_the_mutated_tensor() -> None:
    x = torch.randn(4, 5) * 5
    with guided_relus():
        for call in (lambda t: t.relu_(), torch.relu_, lambda t: F.relu(t, inplace=True), nn.ReLU6(inplace=True)):
            t = x.clone()
            out = call(t)
            assert out is t
            torch.testing.assert_close(t, x.clamp(0, 6) if isinstance(call, nn.ReLU6) else x.clamp(min=0))
        torch.testing.assert_close(F.hardtanh(x, 0.0, 2.5), x.clamp(0, 2.5))


def test_switch_off_gives_the_plain_gradient() -> None:
    model, _, x = every_relu_pair()
    xg = x[:1].clone().requires_grad_(True)
    with guided_relus(GuidedSwitch(guided=False)):
        score = model(xg)[0, 3]
    (g,) = torch.autograd.grad(score, xg)
    assert_close_scaled(g, input_grads(model, x[:1], [3])[0], rtol=1e-5)


# --- parity with Captum where every ReLU is an nn.ReLU module ----------------------------------------------------

CAPTUM_NETS = {
    "vgg11": (lambda: torchvision.models.vgg11(weights=None), "features.19"),  # relu5_2, an in-place ReLU module
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), "layer4"),
}
CAPTUM_ARCHS = [pytest.param("vgg11", marks=pytest.mark.slow), "resnet18"]  # vgg11: 4 s to build its 133M weights


@pytest.mark.parametrize("arch", CAPTUM_ARCHS)
def test_guided_backprop_matches_captum(arch: str) -> None:
    build, _ = CAPTUM_NETS[arch]
    model, x = seeded(build, 64)
    classes = [1, 7, 42]
    ours = guided_backprop(model, x, classes)  # (2, 3, 3, 64, 64) from one forward and one batched backward
    assert_close_scaled(ours, captum_guided(model, x, classes))
    assert rel_diff(input_grads(model, x[:1], classes[:1]), ours[:1, :1]) > 0.1  # not the plain gradient


@pytest.mark.parametrize("arch", CAPTUM_ARCHS)
def test_guided_gradcam_matches_captum(arch: str) -> None:
    build, layer = CAPTUM_NETS[arch]
    model, x = seeded(build, 64)
    classes = [1, 7, 42]
    out = compute_cams(model, x, classes, "guided_gradcam", layer=layer)
    ggc = CaptumGuidedGradCam(model, model.get_submodule(layer))
    for b in range(2):
        for j, c in enumerate(classes):
            ref = ggc.attribute(x[b : b + 1], target=c, interpolate_mode="bilinear")[0]
            assert out.attributions is not None
            assert_close_scaled(out.attributions[b, j], ref)
            torch.testing.assert_close(out.raw[b, j], out.attributions[b, j].abs().sum(0))


# --- where the peers are wrong: ReLU6 modules, functional and in-place ReLU ---------------------------------------


def mini_inception() -> nn.Module:
    """torchvision's BasicConv2d stem and an InceptionA block: all their ReLUs are F.relu(x, inplace=True)."""
    inception = torchvision.models.inception
    return nn.Sequential(
        inception.BasicConv2d(3, 16, kernel_size=3),
        inception.InceptionA(16, pool_features=8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64 + 64 + 96 + 8, 10),
    )


# name: (builder, reference maker, input size, classes); the mini nets run the same classes' code in a second
REFERENCE_NETS = {
    "mini_mobilenet_v2": (
        lambda: torchvision.models.MobileNetV2(10, 0.5, inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2]]),
        swap_relu_modules,
        32,
        [3, 7],
    ),
    "mini_densenet": (
        lambda: torchvision.models.DenseNet(8, (2, 2), num_init_features=16, bn_size=2, num_classes=10),
        densenet_reference,
        32,
        [3, 7],
    ),
    "mini_inception": (mini_inception, inception_reference, 24, [3, 7]),
    "tf_efficientnet_lite0": (  # the project's default backbone: 33 nn.ReLU6 modules
        lambda: timm.create_model("tf_efficientnet_lite0", pretrained=False),
        swap_relu_modules,
        64,
        [3, 500],
    ),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None), swap_relu_modules, 64, [3, 500]),
    "densenet121": (lambda: torchvision.models.densenet121(weights=None), densenet_reference, 64, [3, 500]),
    "inception_v3": (
        lambda: torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False),
        inception_reference,
        96,
        [3, 500],
    ),
}
FAST_NETS = {"mini_mobilenet_v2", "mini_densenet", "mini_inception", "tf_efficientnet_lite0"}
REFERENCE_ARCHS = [pytest.param(a, marks=[] if a in FAST_NETS else pytest.mark.slow) for a in REFERENCE_NETS]


@pytest.mark.parametrize("arch", REFERENCE_ARCHS)
def test_guided_backprop_equals_explicit_reference_where_captum_differs(arch: str) -> None:
    build, make_reference, size, classes = REFERENCE_NETS[arch]
    model, x = seeded(build, size)
    ref_model = make_reference(model).eval()
    counter = CountActivations()
    with torch.no_grad():
        with counter:
            ref_logits = ref_model(x)
        torch.testing.assert_close(ref_logits, model(x))  # the reference computes the same function
    assert counter.calls == 0  # and has no activation left that is not explicitly guided
    expected = input_grads(ref_model, x, classes)
    assert_close_scaled(guided_backprop(model, x, classes), expected)
    assert rel_diff(captum_guided(model, x, classes), expected) > 0.05  # Captum only patches nn.ReLU modules


@pytest.mark.parametrize("arch", [pytest.param("densenet121", marks=pytest.mark.slow), "mini_densenet"])
def test_guided_gradcam_on_densenet_uses_guided_pixels_and_plain_gradcam(arch: str) -> None:
    build, _, size, classes = REFERENCE_NETS[arch]
    model, x = seeded(build, size)
    out = compute_cams(model, x, classes, "guided_gradcam", layer="features")
    cam = compute_cams(model, x, classes, "gradcam", layer="features").raw
    cam = F.interpolate(cam, size=(size, size), mode="bilinear")
    expected = input_grads(densenet_reference(model).eval(), x, classes) * cam.unsqueeze(2)
    assert out.attributions is not None
    assert_close_scaled(out.attributions, expected)


# --- no trace left, other threads unaffected ---------------------------------------------------------------------


def assert_no_trace(model: nn.Module) -> None:
    assert torch._C._len_torch_function_stack() == 0
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", ["guided_backprop", "guided_gradcam"])
def test_nothing_left_after_a_call_or_an_error(method: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).train()
    x = torch.randn(2, 3, 8, 8)
    compute_cams(model, x, [0, 2], method, layer="1")
    assert_no_trace(model)
    assert model.training
    model.append(Boom())
    with pytest.raises(RuntimeError, match="boom"):
        compute_cams(model, x, [0], method, layer="1")
    assert_no_trace(model)
    assert model.training


def test_other_threads_keep_the_plain_gradient() -> None:
    torch.manual_seed(0)
    barrier = threading.Barrier(2, timeout=20)
    guided_thread: list[int] = []

    class Meet(nn.Module):
        """In the guided thread's forward pass, wait until the other thread has done its whole gradient."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if guided_thread and threading.get_ident() == guided_thread[0]:
                barrier.wait()
                barrier.wait()
            return x

    model = nn.Sequential(
        nn.Flatten(), nn.Linear(6, 16), nn.ReLU(), Meet(), nn.Linear(16, 16), nn.ReLU6(), nn.Linear(16, 4)
    )
    x = torch.randn(3, 6, 1, 1)
    plain = input_grads(model, x, [1])  # no guided mode anywhere yet
    results: dict[str, torch.Tensor] = {}

    def guided() -> None:
        guided_thread.append(threading.get_ident())
        results["guided"] = guided_backprop(model, x, [1])

    def other() -> None:
        barrier.wait()  # the guided thread is now inside its forward pass, its mode active
        results["other"] = input_grads(model, x, [1])
        barrier.wait()

    threads = [threading.Thread(target=guided), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    torch.testing.assert_close(results["other"], plain)
    assert rel_diff(results["guided"], plain) > 0.1
    assert_no_trace(model)
