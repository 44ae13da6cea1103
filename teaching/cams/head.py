"""The closed form of a global-average-pool + linear head: gradients and CAM maps without a backward pass.

Reference: CAM, Zhou et al. 2016, https://arxiv.org/abs/1512.04150

Where the target layer's activation A (B, C, h, w) feeds y = W mean_hw(A) + b, dy_c/dA = W[c] / (h w) at every
position, and a contrast of scores has the same contrast of W's rows. `feeds_gap_linear` checks on every pass that
the logits really are that function of A (within the rounding of the model's dtype), so a wrong layer or head falls
back to the backward pass instead of giving wrong maps. `head_for` is the one rule deciding who gets the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from teaching.cams.core import CamMethod
from teaching.cams.maps import float32_maths
from teaching.cams.targets import apply_contrast


def head_for(model: nn.Module, classifier: str | None, method: type[CamMethod] | CamMethod) -> nn.Linear | None:
    """The head's linear layer to pass to `compute_cams` for `method`, or None.

    The methods that use the head (`uses_head`: the gradient methods and the closed-form CAM) get the module called
    `classifier` when it is an `nn.Linear`; None for the others, and when the model has no GAP + linear head
    (`classifier` None). Gradient methods then skip the backward pass at a layer that feeds global-average-pool +
    linear (checked on every pass); `cam` cannot run without it.
    """
    if not method.uses_head or classifier is None:
        return None
    linear = dict(model.named_modules()).get(classifier)
    return linear if isinstance(linear, nn.Linear) else None


def head_tolerance(dtype: torch.dtype) -> float:
    """Relative bound on how far logits computed in `dtype` may lie from the same head computed in float32.

    float32: summation order only (TF32 matmuls exceed it and so take the backward pass). float16 and bfloat16: the
    pooled features and the logits each rounded to the dtype come to at most one epsilon; twice that again for a
    mean summed in the dtype. Measured on lite0: bfloat16 0.003, float16 0.0003, float32 0; a layer one step before
    the pool (conv_head, layer4.2.bn3) misses by 0.1-0.2.
    """
    return 1e-4 if dtype in (torch.float32, torch.float64) else 4 * torch.finfo(dtype).eps


def feeds_gap_linear(acts: torch.Tensor, logits: torch.Tensor, linear: nn.Module) -> bool:
    """Whether this pass's logits (B, N) are `linear(mean_hw(acts))`, checked in float32 within `head_tolerance`.

    Each logit may differ by the tolerance times sum_c |W[n, c]| |mean_hw A_c| + |b_n|, the scale of the
    rounding of the dot product whatever its cancellations. False for another layer, another head, or an
    activation changed in place after the layer (densenet's functional ReLU).
    """
    if not isinstance(linear, nn.Linear) or acts.ndim != 4 or logits.ndim != 2:
        return False
    if acts.shape[:2] != (logits.shape[0], linear.in_features) or logits.shape[1] != linear.out_features:
        return False
    with torch.no_grad(), float32_maths(acts.device):
        pooled = acts.detach().float().mean((2, 3))  # (B, C)
        weight = linear.weight.detach().float()
        bias = linear.bias.detach().float() if linear.bias is not None else None
        expected = F.linear(pooled, weight, bias)
        scale = F.linear(pooled.abs(), weight.abs(), bias.abs() if bias is not None else None)
        gap = (logits.detach().float() - expected).abs()
        return bool((gap <= head_tolerance(logits.dtype) * scale).all())


def head_rows(
    linear: nn.Linear, classes: torch.Tensor, contrast: str | None = None, versus: int | None = None
) -> torch.Tensor:
    """The head's weight rows of the targets, (B, k, C) in float32, with the same contrast as `class_scores`:
    dy/d(pooled features) of each target score."""
    all_w = linear.weight.detach().float()  # (num_classes, C)
    versus_rows = all_w[versus] if versus is not None else None  # (C,)
    return apply_contrast(all_w[classes], contrast, versus_rows)  # (B, k, C)


def gap_linear_grads(
    acts: torch.Tensor,
    logits: torch.Tensor,
    linear: nn.Module,
    classes: torch.Tensor,
    contrast: str | None = None,
    versus: int | None = None,
) -> torch.Tensor | None:
    """The gradients of `class_scores` to acts without a backward pass, where acts feed global-average-pool + linear.

    Returns (k, B, C, h, w) in float32 as a broadcast view of (k, B, C, 1, 1), or None when `feeds_gap_linear`
    fails on this pass (the caller then runs the backward), or inside a CUDA graph capture, where that check's host
    sync is not allowed.
    """
    if acts.is_cuda and torch.cuda.is_current_stream_capturing():
        return None
    if not isinstance(linear, nn.Linear) or not feeds_gap_linear(acts, logits, linear):
        return None
    w = head_rows(linear, classes, contrast, versus)  # (B, k, C)
    h, wd = acts.shape[-2:]
    g = (w / (h * wd)).transpose(0, 1)  # (k, B, C)
    return g[..., None, None].expand(*g.shape, h, wd)
