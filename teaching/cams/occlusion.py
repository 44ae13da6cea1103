"""Occlusion: how much each target score drops when a square of the input is hidden; no gradient is taken.

Reference: Occlusion, Zeiler and Fergus 2014, https://arxiv.org/abs/1311.2901

The occluded inputs run in batches of `batch_size` under `torch.no_grad` on the input's device, and all k target
scores are read from the same passes (Captum repeats every pass for each class). The scores are the raw logits, or
the contrastive scores of `class_scores` when a contrast is asked for.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from teaching.cams.core import CamMethod, CamOutput, CamRequest
from teaching.cams.targets import class_scores
from teaching.errors import MethodError


def window_rows(n: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """(count, n) 0/1 rows: window j covers [j stride, j stride + window) cut to n, with Captum's count of shifts
    ceil((n - window) / stride) + 1, so the last window may be cut off but every pixel is covered."""
    count = math.ceil((n - window) / stride) + 1
    starts = torch.arange(count, device=device)[:, None] * stride  # (count, 1)
    pos = torch.arange(n, device=device)  # (n,)
    return ((pos >= starts) & (pos < starts + window)).float()


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
    label = "Occlusion"
    slow_on_cpu = True
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
        return CamOutput(maps, logits, "", timings=timings, classes=classes)
