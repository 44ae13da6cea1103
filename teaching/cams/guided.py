"""Guided Backpropagation and Guided Grad-CAM on batches, through every form of ReLU.

References:
    Guided Backpropagation, Springenberg et al. 2015, https://arxiv.org/abs/1412.6806
    Guided Grad-CAM, Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391

Guided backpropagation is the gradient of a class score with respect to the input pixels, except that at every
ReLU the gradient is also clamped at zero: with x the ReLU input and g the gradient arriving from above,
    plain   dx = g * (x > 0)
    guided  dx = max(g, 0) * (x > 0)
and for the clipped ReLU6 (min(max(x, 0), 6)) the derivative mask is 0 < x < 6. Guided Grad-CAM multiplies the
guided gradient by the Grad-CAM map upsampled to the input size (bilinear by default, as Captum's
`GuidedGradCam(..., interpolate_mode="bilinear")`, or "nearest", Captum's default).

How every ReLU is caught: the peers replace the backward of `nn.ReLU` modules only, so the ReLU6 of MobileNet and
EfficientNet-Lite and the functional `F.relu(x, inplace=True)` of DenseNet and Inception keep their plain gradient.
Here a `TorchFunctionMode` sees every call of `F.relu`, `torch.relu(_)`, `Tensor.relu(_)`, `F.relu6`,
`F.hardtanh(x, 0, m)` (what `nn.ReLU6` calls) and the `torch._C._nn` kernels behind them, and routes each through
one autograd function. Calls made inside an intercepted function are not seen again (the mode is off while it
runs), so each activation is counted once. The mode stack is thread-local: other threads using the same model
are unaffected, and nothing is attached to the model except a forward hook on the Grad-CAM layer, removed in
`finally`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from teaching.cams.core import CamMethod, CamOutput, CamRequest, batched_grad, capture
from teaching.cams.gradient import GradCAM
from teaching.cams.maps import upsample
from teaching.cams.targets import class_scores
from teaching.errors import MethodError, ModelError

INTERPOLATIONS = ("bilinear", "nearest")


@dataclass
class GuidedSwitch:
    """Read by every guided ReLU at backward time, so one forward pass can serve a plain and a guided backward."""

    guided: bool = True  # False: the ReLUs give their plain gradient (for the Grad-CAM part of Guided Grad-CAM)


class GuidedClip(torch.autograd.Function):
    """min(max(x, 0), upper) with the guided gradient max(g, 0) * (0 < x < upper); in place when asked."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        upper: float | None,
        inplace: bool,
        switch: GuidedSwitch,
    ) -> torch.Tensor:
        if inplace:
            out = x.clamp_(min=0, max=upper)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0, max=upper)
        ctx.save_for_backward(out)  # out > 0 (and out < upper) exactly where x is, as the native ReLU saves it
        ctx.upper = upper
        ctx.switch = switch
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (out,) = ctx.saved_tensors
        mask = out > 0
        if ctx.upper is not None:
            mask = mask & (out < ctx.upper)
        if ctx.switch.guided:
            grad = grad.clamp(min=0)
        return grad * mask, None, None, None


@dataclass(frozen=True)
class _Signature:
    """How an intercepted function takes its arguments."""

    params: tuple[str, ...]  # positional parameter names, the tensor first
    defaults: tuple[tuple[str, object], ...]  # min_val, max_val and inplace when not passed (or fixed by the name)


_RELU_BOUNDS = (("min_val", 0.0), ("max_val", math.inf))
_RELU6_BOUNDS = (("min_val", 0.0), ("max_val", 6.0))
_HARDTANH_BOUNDS = (("min_val", -1.0), ("max_val", 1.0))


def _sig(params: str, bounds: tuple[tuple[str, float], ...], inplace: bool) -> _Signature:
    return _Signature(tuple(params.split()), (*bounds, ("inplace", inplace)))


# F.relu_ is torch.relu_ and F.hardtanh_ is torch._C._nn.hardtanh_; nn.ReLU calls F.relu, nn.ReLU6 F.hardtanh.
INTERCEPTED: dict[Callable[..., object], _Signature] = {
    F.relu: _sig("input inplace", _RELU_BOUNDS, False),
    torch.relu: _sig("input", _RELU_BOUNDS, False),
    torch.relu_: _sig("input", _RELU_BOUNDS, True),
    torch.Tensor.relu: _sig("input", _RELU_BOUNDS, False),
    torch.Tensor.relu_: _sig("input", _RELU_BOUNDS, True),
    F.relu6: _sig("input inplace", _RELU6_BOUNDS, False),
    torch._C._nn.relu6: _sig("input", _RELU6_BOUNDS, False),
    torch._C._nn.relu6_: _sig("input", _RELU6_BOUNDS, True),
    F.hardtanh: _sig("input min_val max_val inplace", _HARDTANH_BOUNDS, False),
    torch._C._nn.hardtanh: _sig("input min_val max_val", _HARDTANH_BOUNDS, False),
    torch._C._nn.hardtanh_: _sig("input min_val max_val", _HARDTANH_BOUNDS, True),
}


def _bind(sig: _Signature, args: Sequence[object], kwargs: dict[str, object]) -> dict[str, object]:
    bound = dict(sig.defaults)
    bound.update(zip(sig.params, args, strict=False))
    bound.update(kwargs)
    return bound


class GuidedMode(TorchFunctionMode):
    """While active on the current thread, every ReLU, ReLU6 and hardtanh(0, m) goes through `GuidedClip`.

    A hardtanh with a lower bound other than 0 is not a ReLU and runs as usual, as does everything else.
    """

    def __init__(self, switch: GuidedSwitch | None = None) -> None:
        super().__init__()
        self.switch = switch if switch is not None else GuidedSwitch()

    def __torch_function__(
        self,
        func: Callable[..., object],
        types: object,
        args: Sequence[object] = (),
        kwargs: dict[str, object] | None = None,
    ) -> object:
        kwargs = kwargs or {}
        sig = INTERCEPTED.get(func)
        if sig is None:
            return func(*args, **kwargs)
        bound = _bind(sig, args, kwargs)
        x, lower, upper = bound["input"], float(bound["min_val"]), float(bound["max_val"])  # type: ignore[arg-type]
        if not isinstance(x, torch.Tensor) or lower != 0 or not upper > 0:
            return func(*args, **kwargs)
        return GuidedClip.apply(x, None if math.isinf(upper) else upper, bool(bound["inplace"]), self.switch)


@contextmanager
def guided_relus(switch: GuidedSwitch | None = None) -> Iterator[GuidedSwitch]:
    """Make every ReLU of forward passes run on this thread inside the block guided; yields the switch."""
    mode = GuidedMode(switch)
    with mode:
        yield mode.switch


def _input_leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().requires_grad_(True)


class GuidedBackprop(CamMethod):
    """Guided backpropagation: the guided gradient of each target score w.r.t. the input pixels.

    attributions (B, k, C, H, W) are the signed gradients; raw (B, k, H, W) is sum_c |attribution|.
    """

    name = "guided_backprop"
    label = "Guided Backprop"
    uses_layer = False
    graph_safe = True
    fails_sanity = True

    def run(self, req: CamRequest) -> CamOutput:
        t0 = time.perf_counter()
        x = _input_leaf(req.x)
        with torch.enable_grad(), guided_relus():
            logits = req.model(x)
        t1 = time.perf_counter()
        scores = class_scores(logits, req.classes, req.contrast, req.versus)  # (B, k)
        grads = batched_grad(scores, x).transpose(0, 1)  # (B, k, C, H, W)
        t2 = time.perf_counter()
        raw = grads.abs().sum(2)  # (B, k, H, W)
        timings = {"forward": t1 - t0, "backward": t2 - t1, "maps": time.perf_counter() - t2}
        return CamOutput(raw, logits.detach(), "", attributions=grads, timings=timings, classes=req.classes)


class GuidedGradCAM(CamMethod):
    """Guided Grad-CAM: guided backpropagation times the Grad-CAM map upsampled to the input size.

    One forward pass serves both backward passes: first the plain gradient to the target layer (Grad-CAM), then
    the guided gradient to the input. The Grad-CAM map is the raw one (after ReLU, not normalised), upsampled with
    `options["interpolate"]` ("bilinear", the default, or "nearest"), and multiplies every input channel.
    attributions (B, k, C, H, W) are the products; raw (B, k, H, W) is sum_c |attribution|.
    """

    name = "guided_gradcam"
    label = "Guided Grad-CAM"
    graph_safe = True
    fails_sanity = True

    def run(self, req: CamRequest) -> CamOutput:
        mode = str(req.options.get("interpolate", "bilinear"))
        if mode not in INTERPOLATIONS:
            raise MethodError(f"unknown interpolation {mode!r}; use one of {', '.join(INTERPOLATIONS)}")
        t0 = time.perf_counter()
        x = _input_leaf(req.x)
        with (
            torch.enable_grad(),
            guided_relus(GuidedSwitch(guided=False)) as switch,
            capture(req.layer, detach=False) as store,
        ):
            logits = req.model(x)
        if not store:
            raise ModelError("the target layer was not used in the forward pass; choose another layer")
        acts = store[-1]  # (B, C', h, w)
        t1 = time.perf_counter()
        scores = class_scores(logits, req.classes, req.contrast, req.versus)  # (B, k)
        layer_grads = batched_grad(scores, acts, retain_graph=True)  # (k, B, C', h, w), plain gradients
        switch.guided = True
        pixel_grads = batched_grad(scores, x).transpose(0, 1)  # (B, k, C, H, W), guided gradients
        t2 = time.perf_counter()
        with torch.no_grad():
            cam = F.relu(GradCAM().combine(acts.detach().unsqueeze(0), layer_grads)).transpose(0, 1)  # (B, k, h, w)
            size = (x.shape[-2], x.shape[-1])
            if mode == "bilinear":
                cam = upsample(cam, size, normalise=False)
            else:
                cam = F.interpolate(cam, size=size, mode="nearest")  # (B, k, H, W)
            attributions = pixel_grads * cam.unsqueeze(2)  # (B, k, C, H, W)
            raw = attributions.abs().sum(2)  # (B, k, H, W)
        timings = {"forward": t1 - t0, "backward": t2 - t1, "maps": time.perf_counter() - t2}
        return CamOutput(
            raw, logits.detach(), req.layer_name, attributions=attributions, timings=timings, classes=req.classes
        )
