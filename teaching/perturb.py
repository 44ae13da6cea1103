"""Perturbation methods: the model scores masked copies of the input; no gradient is taken.

References:
    Score-CAM, Wang et al. 2020, https://arxiv.org/abs/1910.01279
    Occlusion, Zeiler and Fergus 2014, https://arxiv.org/abs/1311.2901

Both run their masked inputs in batches of `batch_size` under `torch.no_grad` on the input's device and read all
k target scores from the same passes (the peers repeat every pass for each class). The scores are the raw logits,
or the contrastive scores of `class_scores` when a contrast is asked for.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from teaching.cams import CamMethod, CamOutput, CamRequest, class_scores, forward_with_activation, register
from teaching.errors import MethodError


def channel_masks(acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Score-CAM masks: each (n, 1, h, w) map upsampled to `size` (bilinear, align_corners=True) and min-max
    scaled as (m - min) / (max - min + 1e-8), pytorch-grad-cam 1.5.7's arithmetic; (n, 1, H, W)."""
    up = F.interpolate(acts, size=size, mode="bilinear", align_corners=True)
    lo = up.amin((-2, -1), keepdim=True)
    hi = up.amax((-2, -1), keepdim=True)
    return (up - lo) / (hi - lo + 1e-8)


@register("scorecam")
class ScoreCAM(CamMethod):
    r"""Score-CAM: each channel weighs as much as the class score of the input seen through that channel.

    With A_c the target activation of channel c, M_c its `channel_masks` at the input size and s_c = y(x * M_c):
        w = softmax_c(s),   L = relu(sum_c w_c A_c)   at the layer's resolution.
    A channel whose upsampled map is flat has M_c = 0 exactly; all of them share the score of the all-zero input,
    computed once, so the result is what scoring every channel would give. Option `batch_size` (64): masked
    inputs per forward pass.
    """

    name = "scorecam"

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
        return CamOutput(maps, logits, req.layer_name, timings=timings)


def _live(rows: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Whether each (n, 1, h, w) map stays non-flat once upsampled the way `channel_masks` does it, (n,)."""
    up = F.interpolate(rows, size=size, mode="bilinear", align_corners=True).flatten(1)
    return up.amax(1) > up.amin(1)


def window_rows(n: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """(count, n) 0/1 rows: window j covers [j stride, j stride + window) cut to n, with Captum's count of shifts
    ceil((n - window) / stride) + 1, so the last window may be cut off but every pixel is covered."""
    count = math.ceil((n - window) / stride) + 1
    starts = torch.arange(count, device=device)[:, None] * stride  # (count, 1)
    pos = torch.arange(n, device=device)  # (n,)
    return ((pos >= starts) & (pos < starts + window)).float()


@register("occlusion")
class Occlusion(CamMethod):
    r"""Occlusion: how much each target score drops when a square of the input is set to 0.

    Square windows of side `window` (default round(min(H, W) / 7)) slide by `stride` (default window // 2) from
    the top-left corner until the input is covered. With d_j = y(x) - y(x with window j set to 0), 0 being the
    dataset mean in normalised space, every pixel p gets the mean drop of the windows that cover it:
        L(p) = relu(sum_{j covers p} d_j / #{j covers p})   at the input's resolution.
    This is Captum's `Occlusion` with sliding_window_shapes=(3, w, w), strides=(3, s, s), baselines=0, whose
    attribution is the same on the three channels. Option `batch_size` (64): occluded inputs per forward pass.
    """

    name = "occlusion"
    uses_layer = False

    def run(self, req: CamRequest) -> CamOutput:
        x, classes = req.x, req.classes
        height, width = x.shape[-2], x.shape[-1]
        batch_size = req.integer("batch_size", 64, minimum=1)
        window = req.integer("window", max(1, round(min(height, width) / 7)), minimum=1)
        stride = req.integer("stride", max(1, window // 2), minimum=1)
        if window > min(height, width) or stride > window:
            raise MethodError(
                f"occlusion needs 1 <= stride <= window <= {min(height, width)} (the input side); "
                f"got window={window}, stride={stride}"
            )
        t0 = time.perf_counter()
        with torch.no_grad():
            logits = req.model(x)
            base = class_scores(logits, classes, req.contrast, req.versus).float()  # (B, k)
            t1 = time.perf_counter()
            rows = window_rows(height, window, stride, x.device)  # (I, H)
            cols = window_rows(width, window, stride, x.device)  # (J, W)
            n_i, n_j = rows.shape[0], cols.shape[0]
            scores = torch.empty(x.shape[0] * n_i * n_j, classes.shape[1], device=x.device)  # (B I J, k)
            for idx in torch.arange(scores.shape[0], device=x.device).split(batch_size):
                img, i, j = idx // (n_i * n_j), idx // n_j % n_i, idx % n_j
                keep = 1 - rows[i][:, None, :, None] * cols[j][:, None, None, :]  # (n, 1, H, W)
                out = req.model(x[img] * keep.to(x.dtype))
                scores[idx] = class_scores(out, classes[img], req.contrast, req.versus).float()
            drops = base[:, None, None, :] - scores.view(-1, n_i, n_j, classes.shape[1])  # (B, I, J, k)
            total = torch.einsum("bijk,ih,jw->bkhw", drops, rows, cols)  # (B, k, H, W)
            maps = F.relu(total / torch.einsum("ih,jw->hw", rows, cols))
        timings = {"forward": t1 - t0, "masked": time.perf_counter() - t1}
        return CamOutput(maps, logits, "", timings=timings)
