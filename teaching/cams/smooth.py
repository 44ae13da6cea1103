"""Smooth Grad-CAM++: Grad-CAM++ with gradient moments averaged over noisy copies of the input.

Reference:
    Smooth Grad-CAM++, Omeiza et al. 2019, https://arxiv.org/abs/1908.01224, as implemented by TorchCAM 0.5.0
    (frgfm/torch-cam, `torchcam.methods.SmoothGradCAMpp`), whose arithmetic this module follows.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from teaching.cams.core import CamMethod, CamOutput, CamRequest, batched_grad, forward_with_activation
from teaching.cams.targets import class_scores


def noise_samples(x: torch.Tensor, n_samples: int, std: float, seed: int) -> torch.Tensor:
    """Gaussian noise N(0, std^2) of shape (n_samples, 1, 3, H, W) for a batch x (B, 3, H, W), on x's device and dtype.

    Drawn on the CPU from a private `torch.Generator` seeded with `seed`: the same noise on every device and every
    run, and the global random state is left alone. One draw serves every image of the batch, so an image gets
    the same maps alone or in a batch.
    """
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn((n_samples, 1, *x.shape[1:]), generator=gen) * std).to(x.device, x.dtype)


class SmoothGradCAMpp(CamMethod):
    r"""Smooth Grad-CAM++ exactly as TorchCAM 0.5.0 computes it.

    With x_m = x + e_m, e_m ~ N(0, std^2) added to the normalised input (m = 1..n), g_m = dy/dA at x_m, A_0 the
    activation of the clean input and A_n, g_n those of the last noisy sample:
        G2 = mean_m g_m^2,   G3 = mean_m g_m^3
        alpha = G2 / (2 G2 + sum_hw(G3 A_0) + 1e-8)
        w_c = sum_hw(alpha relu(g_n))
        L = relu(sum_c w_c A_n)
    TorchCAM's choices are kept so the maps match it: the numerator of alpha is the mean of g^2 (the paper has the
    mean of g), the denominator sums G3 A_0 over the map (the Grad-CAM++ paper has sum(A) G3), and the weights
    and the map use the last sample's gradient and activation, which its loop leaves in its hooks.

    The clean input and all n noisy copies go through ONE forward pass (B (n + 1) rows) and one batched gradient;
    the logits returned are those of the clean rows. Options: n_samples (4), std (0.3), seed (0).
    """

    name = "smoothgradcampp"
    label = "Smooth Grad-CAM++"

    def run(self, req: CamRequest) -> CamOutput:
        n = req.integer("n_samples", 4, minimum=1)
        std = req.real("std", 0.3)
        seed = req.integer("seed", 0)
        x = req.x
        b = x.shape[0]
        t0 = time.perf_counter()
        noisy = (x.unsqueeze(0) + noise_samples(x, n, std, seed)).flatten(0, 1)  # (n B, 3, H, W), sample-major
        acts, logits = forward_with_activation(req.model, torch.cat([x, noisy]), req.layer)  # rows: clean, noisy
        t1 = time.perf_counter()
        scores = class_scores(logits[b:], req.classes.repeat(n, 1), req.contrast, req.versus)  # (n B, k)
        grads = batched_grad(scores, acts)[:, b:]  # (k, n B, C, h, w)
        t2 = time.perf_counter()
        with torch.no_grad():
            g = grads.float().unflatten(1, (n, b))  # (k, n, B, C, h, w)
            a = acts.detach().float()
            clean, last = a[:b], a[-b:]  # (B, C, h, w)
            g2, g3 = g.pow(2).mean(1), g.pow(3).mean(1)  # (k, B, C, h, w)
            alpha = g2 / (2 * g2 + (g3 * clean).sum((-2, -1), keepdim=True) + 1e-8)
            weights = (alpha * F.relu(g[:, -1])).sum((-2, -1), keepdim=True)  # (k, B, C, 1, 1)
            maps = F.relu((weights * last).sum(2)).transpose(0, 1)  # (B, k, h, w)
        timings = {"forward": t1 - t0, "backward": t2 - t1, "maps": time.perf_counter() - t2}
        return CamOutput(maps, logits[:b].detach(), req.layer_name, timings=timings, classes=req.classes)
