"""Activation methods: maps weighted without a gradient, by the head's weights (CAM) or by masked scores (Score-CAM).

References:
    CAM, Zhou et al. 2016, https://arxiv.org/abs/1512.04150
    Score-CAM, Wang et al. 2020, https://arxiv.org/abs/1910.01279

Score-CAM runs its masked inputs in batches of `batch_size` under `torch.no_grad` on the input's device and reads
all k target scores from the same passes (the peers repeat every pass for each class). The scores are the raw
logits, or the contrastive scores of `class_scores` when a contrast is asked for.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from teaching.cams.core import CamMethod, CamOutput, CamRequest, forward_with_activation
from teaching.cams.head import head_rows
from teaching.cams.targets import class_scores
from teaching.errors import MethodError


class ClosedFormCAM(CamMethod):
    """CAM for a global-average-pool + linear head: every class map for the cost of one forward pass.

    At the layer feeding the pool, dy_c/dA = W[c] / (h w) everywhere, so Grad-CAM is this map divided by h w.
    """

    name = "cam"
    label = "CAM"
    picks_classes = True
    uses_head = True
    needs_head = True
    graph_safe = True
    linear_in_score = True

    def run(self, req: CamRequest) -> CamOutput:
        t0 = time.perf_counter()
        linear = req.linear
        if not isinstance(linear, nn.Linear):
            raise MethodError("the closed-form CAM needs a global-average-pool + linear head (efficientnet, resnet)")
        with torch.no_grad():
            acts, logits = forward_with_activation(req.model, req.x, req.layer, detach=False)
            t1 = time.perf_counter()
            classes = req.targets(logits)
            class_scores(logits, classes, req.contrast, req.versus)  # checks the targets
            w = head_rows(linear, classes, req.contrast, req.versus)  # (B, k, C)
            signed = torch.einsum("bkc,bchw->bkhw", w, acts.float())  # (B, k, h, w)
        timings = {"forward": t1 - t0, "maps": time.perf_counter() - t1}
        return CamOutput(
            F.relu(signed), logits.detach(), req.layer_name, signed=signed, timings=timings, classes=classes
        )


def channel_masks(acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Score-CAM masks: each (n, 1, h, w) map upsampled to `size` (bilinear, align_corners=True) and min-max
    scaled as (m - min) / (max - min + 1e-8), pytorch-grad-cam 1.5.7's arithmetic; (n, 1, H, W)."""
    up = F.interpolate(acts, size=size, mode="bilinear", align_corners=True)
    lo = up.amin((-2, -1), keepdim=True)
    hi = up.amax((-2, -1), keepdim=True)
    return (up - lo) / (hi - lo + 1e-8)


class ScoreCAM(CamMethod):
    r"""Score-CAM: each channel weighs as much as the class score of the input seen through that channel.

    With A_c the target activation of channel c, M_c its `channel_masks` at the input size and s_c = y(x * M_c):
        w = softmax_c(s),   L = relu(sum_c w_c A_c)   at the layer's resolution.
    A channel whose upsampled map is flat has M_c = 0 exactly; all of them share the score of the all-zero input,
    computed once, so the result is what scoring every channel would give. Option `batch_size` (64): masked
    inputs per forward pass.
    """

    name = "scorecam"
    label = "Score-CAM"
    slow_on_cpu = True

    def run(self, req: CamRequest) -> CamOutput:
        batch_size = req.integer("batch_size", 64, minimum=1)
        x, classes = req.x, req.classes
        t0 = time.perf_counter()
        with torch.no_grad():
            acts, logits = forward_with_activation(req.model, x, req.layer, detach=False)
            class_scores(logits, classes, req.contrast, req.versus)  # checks the targets before the long part
            t1 = time.perf_counter()
            b, c, h, w = acts.shape
            size = (x.shape[-2], x.shape[-1])
            flat = acts.float().reshape(b * c, 1, h, w)  # one row per (image, channel)
            live = torch.cat([_live(rows, size) for rows in flat.split(batch_size)]).nonzero().squeeze(1)
            scores = torch.empty(b * c, classes.shape[1], device=x.device)  # (B C, k)
            if live.numel() < b * c:
                zero = req.model(torch.zeros_like(x[:1])).expand(b, -1)  # flat masks blank the whole input
                scores.view(b, c, -1)[:] = class_scores(zero, classes, req.contrast, req.versus).float()[:, None]
            for rows in live.split(batch_size):
                img = rows // c
                masked = x[img] * channel_masks(flat[rows], size).to(x.dtype)  # (n, 3, H, W)
                out = req.model(masked)
                scores[rows] = class_scores(out, classes[img], req.contrast, req.versus).float()
            weights = torch.softmax(scores.view(b, c, -1).transpose(1, 2), dim=-1)  # (B, k, C)
            maps = F.relu(torch.einsum("bkc,bchw->bkhw", weights, acts.float()))  # (B, k, h, w)
        timings = {"forward": t1 - t0, "masked": time.perf_counter() - t1}
        return CamOutput(maps, logits, req.layer_name, timings=timings, classes=classes)


def _live(rows: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Whether each (n, 1, h, w) map stays non-flat once upsampled the way `channel_masks` does it, (n,)."""
    up = F.interpolate(rows, size=size, mode="bilinear", align_corners=True).flatten(1)
    return up.amax(1) > up.amin(1)
