"""The gradient methods: one forward pass, one batched gradient (or the head's closed form), then channel weights.

References:
    Grad-CAM, Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391
    Grad-CAM++, Chattopadhay et al. 2018, https://arxiv.org/abs/1710.11063 (Eq. 19)
    XGrad-CAM, Fu et al. 2020, https://arxiv.org/abs/2008.02312
    LayerCAM, Jiang et al. 2021, https://ieeexplore.ieee.org/document/9462463

With A the target layer's activation (B, C, h, w) and y the class scores, for each of k targets:
    Grad-CAM   relu(sum_c mean_hw(dy/dA_c) A_c)
    Grad-CAM++ relu(sum_c [sum_hw relu(g) a] A_c), a = g^2 / (2 g^2 + sum_hw(A_c) g^3), a = 0 where g == 0
    XGrad-CAM  relu(sum_c [sum_hw g A_c / sum_hw A_c] A_c)
    LayerCAM   relu(sum_c relu(g) A_c)
The contrastive method is Grad-CAM of y_A - y_B or of y_A - mean of the other targets (`targets.class_scores`).
"""

from __future__ import annotations

import dataclasses
import time

import torch
import torch.nn.functional as F

from teaching.cams.core import EPS, CamMethod, CamOutput, CamRequest, batched_grad, forward_with_activation
from teaching.cams.head import gap_linear_grads
from teaching.cams.maps import float32_maths
from teaching.cams.targets import apply_contrast, check_classes, class_scores
from teaching.errors import MethodError


class GradientCAM(CamMethod):
    """Base of the gradient methods: one forward, one batched gradient, then `combine(A, G)`.

    Given the head's linear layer (`req.linear`) and a target layer that feeds global-average-pool + linear, the
    gradients come in closed form (`head.gap_linear_grads`) instead of from the backward pass; timings["closed_form"]
    says which (1.0 or 0.0), timings["backward"] is the time of either.

    `linear_in_score`: the map before ReLU is linear in the gradient, so the map of a contrast of scores is the same
    contrast of the maps (see `group_contrast`) and needs no second pass.
    """

    picks_classes = True
    uses_head = True
    graph_safe = True

    def run(self, req: CamRequest) -> CamOutput:
        t0 = time.perf_counter()
        acts, logits = forward_with_activation(req.model, req.x, req.layer)
        t1 = time.perf_counter()
        classes = req.targets(logits)
        scores = self.scores(logits, classes, req)  # (B, k)
        grads = None
        if req.linear is not None:
            grads = gap_linear_grads(acts, logits, req.linear, classes, req.contrast, req.versus)
        closed_form = grads is not None
        if grads is None:
            grads = batched_grad(scores, acts)  # (k, B, C, h, w)
        t2 = time.perf_counter()
        with torch.no_grad():  # the maths in float32, whatever the model's precision
            signed = self.combine(acts.detach().float().unsqueeze(0), grads.float()).transpose(0, 1)  # (B, k, h, w)
        timings = {"forward": t1 - t0, "backward": t2 - t1, "maps": time.perf_counter() - t2}
        timings["closed_form"] = float(closed_form)
        kept = signed if self.linear_in_score else None
        return CamOutput(F.relu(signed), logits.detach(), req.layer_name, signed=kept, timings=timings, classes=classes)

    def scores(self, logits: torch.Tensor, classes: torch.Tensor, req: CamRequest) -> torch.Tensor:
        """The (B, k) scores whose gradients weigh the channels: the class scores, or their contrast."""
        return class_scores(logits, classes, req.contrast, req.versus)

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """Map before ReLU, (k, B, h, w), from acts (1, B, C, h, w) and grads (k, B, C, h, w)."""
        return weighted_sum(self.channel_weights(acts, grads), acts)

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """(k, B, C) channel weights."""
        raise NotImplementedError


def spatially_constant(grads: torch.Tensor) -> torch.Tensor | None:
    """grads[..., 0, 0], (k, B, C), when grads (k, B, C, h, w) is a view broadcast over h and w (as the closed form
    `gap_linear_grads` gives), so the methods can work without the spatial dimensions; else None."""
    return grads[..., 0, 0] if grads.stride()[-2:] == (0, 0) else None


def weighted_sum(weights: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """sum_c weights[j, b, c] acts[0, b, c] for every target j, (k, B, h, w), from weights (k, B, C) and acts
    (1, B, C, h, w): one batched matmul over the images, without the (k, B, C, h, w) product."""
    with float32_maths(acts.device):
        return torch.einsum("kbc,bchw->kbhw", weights, acts[0])


class GradCAM(GradientCAM):
    name = "gradcam"
    label = "Grad-CAM"
    linear_in_score = True

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        constant = spatially_constant(grads)
        return constant if constant is not None else grads.mean((-2, -1))


class GradCAMpp(GradientCAM):
    name = "gradcampp"
    label = "Grad-CAM++"

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return gradcampp_weights(acts, grads)


def gradcampp_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights (paper Eq. 19, with pytorch-grad-cam's eps = 1e-6), (k, B, C).

    A spatially constant gradient is worked on (k, B, C) alone: its h w equal terms sum to h w times one. The
    steps run in place on their own temporaries (each is k B C floats, or k B C h w: at k = 1000 that counts).
    """
    constant = spatially_constant(grads)
    sum_acts = acts.sum((-2, -1))  # (1, B, C)
    g, s = (constant, sum_acts) if constant is not None else (grads, sum_acts[..., None, None])
    g2 = g * g
    denominator = (g2 * g).mul_(s).add_(g2, alpha=2).add_(1e-6)  # 2 g^2 + sum(A) g^3 + 1e-6
    alpha = g2.div_(denominator).masked_fill_(g == 0, 0.0)
    terms = F.relu(g).mul_(alpha)
    return terms.mul_(grads.shape[-2] * grads.shape[-1]) if constant is not None else terms.sum((-2, -1))


class XGradCAM(GradientCAM):
    name = "xgradcam"
    label = "XGrad-CAM"
    linear_in_score = True

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        sum_acts = acts.sum((-2, -1))  # (1, B, C)
        constant = spatially_constant(grads)
        weighted = constant * sum_acts if constant is not None else (grads * acts).sum((-2, -1))
        return weighted / (sum_acts + EPS)


class LayerCAM(GradientCAM):
    name = "layercam"
    label = "LayerCAM"

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        constant = spatially_constant(grads)
        if constant is not None:
            return weighted_sum(F.relu(constant), acts)
        return (F.relu(grads) * acts).sum(2)


class ContrastiveCAM(GradCAM):
    """Grad-CAM of y_A - y_B when `versus` is given, else of y_A - mean of the other targets."""

    name = "contrastive"
    label = "Grad-CAM"

    def run(self, req: CamRequest) -> CamOutput:
        if req.contrast is None:
            req = dataclasses.replace(req, contrast="pair" if req.versus is not None else "group")
        return super().run(req)


class FinerCAM(GradCAM):
    r"""Finer-CAM (Zhang et al., CVPR 2025, https://arxiv.org/abs/2501.11309): Grad-CAM of a score that compares
    the target A with the classes the model finds most similar to it, so features A shares with them cancel.

    With y the logits, p = softmax(y) and S_A the `n_compare` classes whose logits lie closest to y_A (A excluded):
        s_A = sum_{j in S_A} p_j (y_A - alpha y_j) / (sum_{j in S_A} p_j + 1e-9)
    and the map is Grad-CAM of s_A. The softmax weights stay on the graph, as in pytorch-grad-cam 1.5.7's
    `FinerWeightedTarget`, whose arithmetic (and default: the 3 nearest classes, alpha = 1) this follows. Unlike the
    group contrast, the comparison classes are chosen per image by the model, not by the teacher. Options:
    alpha (1.0), n_compare (3).
    """

    name = "finercam"
    label = "Finer-CAM"
    uses_head = False  # the score is not linear in the logits: the backward pass is needed
    linear_in_score = False

    def scores(self, logits: torch.Tensor, classes: torch.Tensor, req: CamRequest) -> torch.Tensor:
        if req.contrast is not None or req.versus is not None:
            raise MethodError("Finer-CAM chooses its own comparison classes; drop contrast and versus")
        alpha = req.real("alpha", 1.0)
        n = req.integer("n_compare", 3, minimum=1)
        check_classes(classes, logits.shape[1])
        if n >= logits.shape[1]:
            raise MethodError(f"option n_compare={n} must be below the number of classes ({logits.shape[1]})")
        y = logits.gather(1, classes)  # (B, k)
        with torch.no_grad():
            distance = (logits.detach()[:, None, :] - y.detach()[..., None]).abs()  # (B, k, N)
            distance.scatter_(2, classes[..., None], float("inf"))  # A is not compared with itself
            nearest = distance.topk(n, dim=2, largest=False).indices  # (B, k, n)
        p = torch.softmax(logits, dim=1)  # on the graph, as the reference keeps it
        b = torch.arange(logits.shape[0], device=logits.device)[:, None, None]
        weights, others = p[b, nearest], logits[b, nearest]  # (B, k, n) each
        return (weights * (y[..., None] - alpha * others)).sum(2) / (weights.sum(2) + 1e-9)


def group_contrast(signed: torch.Tensor) -> torch.Tensor:
    """relu(m_A - mean of the other targets' maps) from signed maps (B, k, h, w) before ReLU.

    For a method whose map is linear in the class score (Grad-CAM, XGrad-CAM, CAM) this is exactly the map of
    y_A - mean(y_others), the "group" contrast, without another forward or backward pass.
    """
    return F.relu(apply_contrast(signed, "group"))
