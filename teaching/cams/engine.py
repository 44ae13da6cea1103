"""The engine: the registry of methods (one plain dict built by explicit imports) and `compute_cams`.

A method family lives in one short module (gradient, activation, occlusion, smooth, guided); this module imports
them all and nothing imports it back, so there is no import cycle and no registration at import time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from teaching.cams.activation import ClosedFormCAM, ScoreCAM
from teaching.cams.core import CamMethod, CamOutput, CamRequest, eval_mode, find_layer
from teaching.cams.gradient import ContrastiveCAM, FinerCAM, GradCAM, GradCAMpp, LayerCAM, XGradCAM
from teaching.cams.guided import GuidedBackprop, GuidedGradCAM
from teaching.cams.occlusion import Occlusion
from teaching.cams.smooth import SmoothGradCAMpp
from teaching.errors import MethodError, echo

METHODS: dict[str, type[CamMethod]] = {
    cls.name: cls
    for cls in (
        GradCAM,
        GradCAMpp,
        XGradCAM,
        LayerCAM,
        ContrastiveCAM,
        FinerCAM,
        ClosedFormCAM,
        ScoreCAM,
        Occlusion,
        SmoothGradCAMpp,
        GuidedBackprop,
        GuidedGradCAM,
    )
}
"""Every method by its key; the classes carry the facts (label, uses_head, slow_on_cpu, ...), see `CamMethod`."""


def get_method(name: str) -> CamMethod:
    """An instance of the method called `name`, or a MethodError listing them."""
    if not isinstance(name, str) or name not in METHODS:
        raise MethodError(f"unknown method {echo(name)!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]()


def class_table(classes: Sequence[int] | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The (B, k) long tensor of class indices on x's device (k shared indices are repeated for every image)."""
    table = torch.as_tensor(classes, dtype=torch.long, device=x.device)
    if table.ndim == 1:
        table = table.unsqueeze(0).expand(x.shape[0], -1)  # (B, k)
    if table.ndim != 2 or table.shape[0] != x.shape[0]:
        raise MethodError(f"classes must be k indices or a (batch, k) table; got shape {tuple(table.shape)}")
    return table


def compute_cams(
    model: nn.Module,
    x: torch.Tensor,
    classes: Sequence[int] | torch.Tensor | None,
    method: str = "gradcam",
    layer: str = "",
    contrast: str | None = None,
    versus: int | None = None,
    linear: nn.Module | None = None,
    **options: object,
) -> CamOutput:
    """Maps of k target classes for each image of a batch.

    The maps (`raw`, float32, NaN-free) and the logits come back in float32 whatever the model's precision; an
    input whose dtype differs from the model's weights is cast to it. Class indices outside the model's classes
    raise a MethodError.

    Args:
        model: any classifier returning logits (B, num_classes).
        x: (B, 3, H, W) preprocessed input on the model's device.
        classes: k class indices shared by all images, or a (B, k) tensor of per-image indices; None for the
            `top_k` (an option, default 3) most probable classes of each image, read from the method's own forward
            pass where it can (gradient methods, CAM), else from one pass before. `CamOutput.classes` has them.
        method: a key of METHODS.
        layer: dotted target layer name (ignored by pixel-space methods).
        contrast: None, "group" or "pair" (see `targets.class_scores`).
        versus: class B for the "pair" contrast.
        linear: the head's linear layer (`head.head_for` says who gets it): needed by the closed-form CAM; the
            gradient methods then take their gradients in closed form where `layer` feeds global-average-pool +
            `linear` (checked on every pass). Methods that do not use the head ignore it.
        options: method options (e.g. batch_size, n_samples, std, seed).
    """
    impl = get_method(method)
    if x.ndim != 4:
        raise MethodError(f"the input must be a (batch, channels, height, width) tensor; got shape {tuple(x.shape)}")
    weight = next(model.parameters(), None)
    if weight is not None and weight.is_floating_point() and x.dtype != weight.dtype:
        x = x.to(weight.dtype)
    target = find_layer(model, layer) if impl.uses_layer else model
    pick, top_k = 0, options.pop("top_k", 3)  # pick > 0: the method takes the top `pick` from its own pass
    with eval_mode(model):
        if classes is None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise MethodError(f"top_k={top_k!r} must be a whole number >= 1")
            if impl.picks_classes:
                pick, classes = top_k, torch.zeros(x.shape[0], 0, dtype=torch.long)  # (B, 0) until the pass
            else:
                with torch.no_grad():
                    classes = model(x).topk(top_k, dim=1).indices
        cls = class_table(classes, x)
        head = linear if impl.uses_head else None
        req = CamRequest(model, x, cls, layer, target, contrast, versus, head, options, top_k=pick)
        out = impl.run(req)
    out.classes = out.classes if out.classes is not None else cls
    out.raw = torch.nan_to_num(out.raw.float(), nan=0.0)
    if out.signed is not None:
        out.signed = torch.nan_to_num(out.signed.float(), nan=0.0)
    out.logits = out.logits.float()
    if out.attributions is not None:
        out.attributions = out.attributions.float()
    return out


def guided_backprop(
    model: nn.Module,
    x: torch.Tensor,
    classes: Sequence[int] | torch.Tensor,
    contrast: str | None = None,
    versus: int | None = None,
) -> torch.Tensor:
    """Guided gradients of k class scores w.r.t. the input for every image of a batch, (B, k, C, H, W).

    One forward pass and one batched backward; `classes` are k indices shared by all images or a (B, k) table;
    `contrast`/`versus` as in `targets.class_scores`.
    """
    out = compute_cams(model, x, classes, "guided_backprop", contrast=contrast, versus=versus)
    assert out.attributions is not None
    return out.attributions
