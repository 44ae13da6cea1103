"""Faithfulness, localisation and teaching metrics of saliency maps, batched in torch on the model's device.

References:
    Average Drop / Increase in Confidence: Chattopadhay et al. 2018 (Grad-CAM++), https://arxiv.org/abs/1710.11063
    Deletion / insertion: Petsiuk et al. 2018 (RISE), https://arxiv.org/abs/1806.07421
    Pointing game: Zhang et al. 2016 (excitation backprop), https://arxiv.org/abs/1608.00507
    Trait pointing (pointing game and top-20% mass on the part a trait names): ours, defined in docs/EVALUATION.md.
    Model randomisation test: Adebayo et al. 2018 (sanity checks), https://arxiv.org/abs/1810.03292
    Contrastive faithfulness and class discrimination: ours, defined in docs/EVALUATION.md.

Conventions shared by every function:
    x: (B, 3, H, W) the model's preprocessed input; maps: (B, H, W) in [0, 1] at the input's resolution.
    An image is perturbed by blending it with a baseline image of the same shape, `baseline + keep * (x - baseline)`;
    the black image (`black_like`) and the blurred image (`blur`) are the baselines used. Because the blend is
    linear it is the same in pixel space and in the normalised space the model sees.
    Pixels are ranked by the map, most important first; ties are broken by a smooth random field drawn from the
    `generator` (random blobs at a CAM's 7 x 7 resolution), so a constant (e.g. all-zero) map ranks pixels in
    random blobs: it is the random baseline of every ranking metric, and the pointing game then points at a
    random pixel. (Scattered random pixels would be a harsher perturbation than any region of the same area.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur

POINTING_TOLERANCE = 15.0  # pixels at 224 px (Zhang et al.); scaled with the crop side
POINTING_SIDE = 224.0
DELETION_STEPS = 32  # perturbation curve points are steps + 1, from 0% to 100% of the pixels
BLUR_KERNEL = 11  # RISE insertion substrate: Gaussian blur, kernel 11, sigma 5 (their released code)
BLUR_SIGMA = 5.0
CONTRAST_FRACTION = 0.2  # share of pixels deleted by the contrastive faithfulness test
FORWARD_BATCH = 64  # inputs per forward pass in the perturbation metrics
TRAIT_TOP = 0.2  # trait pointing: share of the map's top-20% mass on the trait's part
RANDOM_GRAIN = 7  # cells per side of the random field that orders tied pixels (a CAM's 7 x 7 resolution)

Explainer = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (model, x (B, 3, H, W)) -> maps (B, H, W)


# --- baselines and perturbations -------------------------------------------------------------------------------


def black_like(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The all-black image (pixel value 0) in the model's normalised space, shaped like x."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (-m / s).expand_as(x).contiguous()


def blur(x: torch.Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Gaussian blur of each image (reflect padding): the insertion metric's starting image."""
    return gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def blend(x: torch.Tensor, baseline: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`baseline + keep * (x - baseline)`; keep (B, H, W) or (B, 1, H, W) in [0, 1] (1 keeps the pixel of x).

    `torch.lerp` gives exactly x where keep is 1 and exactly the baseline where it is 0.
    """
    if keep.ndim == 3:
        keep = keep.unsqueeze(1)
    return torch.lerp(baseline, x, keep.to(x.dtype))


def random_field(
    shape: tuple[int, int, int], grain: int = RANDOM_GRAIN, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, H, W) smooth random values: uniform noise on a grain x grain grid, bilinearly upsampled.

    Its highest pixels form blobs of the size a CAM's do (a 7 x 7 layer upsampled), not scattered pixels.
    """
    b, h, w = shape
    noise = torch.rand(b, 1, grain, grain, generator=generator)
    return F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)[:, 0]


def pixel_ranks(
    maps: torch.Tensor, generator: torch.Generator | None = None, grain: int = RANDOM_GRAIN
) -> torch.Tensor:
    """Rank of each pixel, (B, H*W) long: 0 for the pixel with the highest value.

    Ties are ordered by a `random_field` drawn from the generator, so a constant map ranks the pixels in random
    blobs: the random baseline.
    """
    b, n = maps.shape[0], maps[0].numel()
    tie = random_field((b, *maps.shape[-2:]), grain, generator).reshape(b, n).to(maps.device)
    order = torch.argsort(tie, dim=1, descending=True, stable=True)
    values = maps.reshape(b, n).float().gather(1, order)
    order = order.gather(1, torch.argsort(values, dim=1, descending=True, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=maps.device).expand(b, n))
    return ranks


def top_mask(maps: torch.Tensor, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, H, W) float mask, 1 on the round(fraction * H * W) highest pixels of each map."""
    n = maps[0].numel()
    ranks = pixel_ranks(maps, generator)
    return (ranks < round(fraction * n)).to(maps.dtype).view_as(maps)


# --- class scores ----------------------------------------------------------------------------------------------


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, batch_size: int = FORWARD_BATCH) -> torch.Tensor:
    return torch.cat([model(chunk) for chunk in x.split(batch_size)]).float()


def class_probability(
    model: nn.Module, x: torch.Tensor, classes: torch.Tensor, batch_size: int = FORWARD_BATCH
) -> torch.Tensor:
    """Softmax probability of classes[i] on image x[i], (N,)."""
    return torch.softmax(_logits(model, x, batch_size), 1).gather(1, classes.view(-1, 1)).squeeze(1)


def logit_margin(
    model: nn.Module, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, batch_size: int = FORWARD_BATCH
) -> torch.Tensor:
    """y_a - y_b on each image, (N,)."""
    logits = _logits(model, x, batch_size)
    return logits.gather(1, a.view(-1, 1)).squeeze(1) - logits.gather(1, b.view(-1, 1)).squeeze(1)


# --- Average Drop and Increase in Confidence --------------------------------------------------------------------


def average_drop(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor, baseline: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the drop max(0, Y - O) / Y x 100 and the increase O > Y (Grad-CAM++ paper).

    Y is the class probability on the image and O on the image multiplied by its map (`blend` with the black
    baseline: the image times the map in pixel space). Average Drop % is the mean of the drops, Increase in
    Confidence % the mean of the increases x 100. A map of ones gives O = Y: drop 0, no increase.

    Returns:
        drop (B,) in percent, increase (B,) bool.
    """
    both = torch.cat([x, blend(x, baseline, maps)])
    p = class_probability(model, both, classes.repeat(2))
    y, o = p[: x.shape[0]], p[x.shape[0] :]
    return (y - o).clamp(min=0) / y.clamp(min=1e-12) * 100, o > y


# --- deletion and insertion --------------------------------------------------------------------------------------


def perturbation_curve(
    model: nn.Module,
    start: torch.Tensor,
    end: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    steps: int = DELETION_STEPS,
    generator: torch.Generator | None = None,
    batch_size: int = FORWARD_BATCH,
) -> torch.Tensor:
    """Class probability while pixels switch from `start` to `end` in the map's order, (B, steps + 1).

    Point i has the round(i / steps * H * W) highest-ranked pixels taken from `end`, the rest from `start`;
    the steps + 1 inputs of each image are evaluated together. Deletion is start = image, end = black; insertion
    is start = blurred image, end = image.
    """
    b, _, h, w = start.shape
    n = h * w
    ranks = pixel_ranks(maps, generator)  # (B, N)
    counts = torch.tensor([round(i * n / steps) for i in range(steps + 1)], device=start.device)  # (T,)
    switched = (ranks[:, None, :] < counts[None, :, None]).to(start.dtype).view(b, steps + 1, 1, h, w)
    inputs = torch.lerp(start[:, None], end[:, None], switched)  # (B, T, 3, H, W)
    probs = class_probability(model, inputs.flatten(0, 1), classes.repeat_interleave(steps + 1), batch_size)
    return probs.view(b, steps + 1)


def auc(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid area under each curve (B, T) over an x-axis from 0 to 1 in T - 1 equal steps, (B,)."""
    steps = curve.shape[1] - 1
    return (curve.sum(1) - (curve[:, 0] + curve[:, -1]) / 2) / steps


def deletion(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    baseline: torch.Tensor,
    steps: int = DELETION_STEPS,
    generator: torch.Generator | None = None,
    batch_size: int = FORWARD_BATCH,
) -> torch.Tensor:
    """Deletion AUC per image (RISE; lower is better): pixels set to `baseline` (black), most important first."""
    return auc(perturbation_curve(model, x, baseline, maps, classes, steps, generator, batch_size))


def insertion(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    steps: int = DELETION_STEPS,
    generator: torch.Generator | None = None,
    batch_size: int = FORWARD_BATCH,
) -> torch.Tensor:
    """Insertion AUC per image (RISE; higher is better): pixels of x pasted onto `blur(x)`, most important first."""
    return auc(perturbation_curve(model, blur(x), x, maps, classes, steps, generator, batch_size))


# --- pointing game -----------------------------------------------------------------------------------------------


def pointing_tolerance(side: int) -> float:
    """The 15 px tolerance of the pointing game (at 224 px) scaled to a crop of `side` pixels."""
    return POINTING_TOLERANCE * side / POINTING_SIDE


def boxes_to_crop(boxes: torch.Tensor, crop_box: Sequence[float], side: int) -> torch.Tensor:
    """Boxes (n, 4) xmin, ymin, xmax, ymax in image pixels -> the model's (side x side) input frame.

    `crop_box` (x0, y0, x1, y1) is the part of the image that the model's input covers (`Backbone.preprocess`).
    """
    x0, y0, x1, y1 = (float(v) for v in crop_box)
    scale = torch.tensor([side / (x1 - x0), side / (y1 - y0)] * 2, dtype=torch.float32)
    shift = torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
    return (boxes.float().reshape(-1, 4) - shift) * scale


def pointing_game(
    maps: torch.Tensor,
    boxes: Sequence[torch.Tensor],
    tolerance: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hit per image, (B,) bool: the map's maximum lies within `tolerance` pixels of one of the image's boxes.

    Args:
        maps: (B, H, W).
        boxes: per image a (n, 4) tensor xmin, ymin, xmax, ymax in the map's pixel frame (`boxes_to_crop`).
        tolerance: distance in pixels from the pixel centre to the box (`pointing_tolerance`).
        generator: draws among tied maxima (a constant map points at a random pixel).
    """
    b, h, w = maps.shape
    flat = maps.reshape(b, -1).float()
    tied = flat >= flat.amax(1, keepdim=True)
    pick = (torch.rand(flat.shape, generator=generator).to(flat.device) + 1) * tied  # random among the maxima
    index = pick.argmax(1).cpu()
    hits = []
    for i in range(b):
        py, px = float(index[i] // w) + 0.5, float(index[i] % w) + 0.5
        bx = boxes[i].float().reshape(-1, 4).cpu()
        dx = torch.clamp(torch.maximum(bx[:, 0] - px, px - bx[:, 2]), min=0)
        dy = torch.clamp(torch.maximum(bx[:, 1] - py, py - bx[:, 3]), min=0)
        hits.append(bool((torch.hypot(dx, dy) <= tolerance).any()))
    return torch.tensor(hits)


def box_mask(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(H, W) bool: the pixels whose centre lies in one of the boxes (n, 4) x0, y0, x1, y1 of the map's frame."""
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    mask = torch.zeros(h, w, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.float().reshape(-1, 4).cpu().tolist():
        mask |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return mask


def trait_pointing(
    m: torch.Tensor, boxes: torch.Tensor, fraction: float = TRAIT_TOP, generator: torch.Generator | None = None
) -> tuple[bool, float]:
    """Trait pointing of one map (H, W) on a trait part's boxes (n, 4) in the map's frame (`boxes_to_crop`).

    Returns whether the map's maximum lies in a box (tolerance 0; random among tied maxima), and the share of the
    map's mass on its top `fraction` of pixels that lies in the boxes (of their count when that mass is zero).
    """
    h, w = m.shape
    mask = box_mask(boxes, h, w).to(m.device)
    hit = bool(pointing_game(m[None], [boxes], 0.0, generator)[0])
    weight = top_weight(m, fraction, generator)
    return hit, float((weight * mask).sum() / weight.sum())


def top_weight(m: torch.Tensor, fraction: float = TRAIT_TOP, generator: torch.Generator | None = None) -> torch.Tensor:
    """The map (H, W) on its top `fraction` of pixels and 0 elsewhere (the top pixels themselves, each 1, when that
    mass is zero): the weights whose share inside a part's boxes is trait pointing's mass."""
    top = top_mask(m[None].float(), fraction, generator)[0]
    weight = m.float().clamp(min=0) * top
    return weight if float(weight.sum()) > 0 else top


# --- contrastive faithfulness --------------------------------------------------------------------------------------


def contrastive_faithfulness(
    model: nn.Module,
    x: torch.Tensor,
    contrast_maps: torch.Tensor,
    plain_maps: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    baseline: torch.Tensor,
    fraction: float = CONTRAST_FRACTION,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Drop of the logit margin y_a - y_b when the top `fraction` of pixels are set to `baseline` (black).

    Three deletions per image: the top pixels of the A-vs-B map, the same number of random pixels, and the top
    pixels of the plain map of A. A map that shows what separates A from B drops the margin more than random
    pixels (ratio > 1) and more than the plain map. Ties, random pixels and a constant map all draw their
    pixels from one generator seeded with `seed`, so a constant map deletes exactly the random pixels.

    Returns:
        "contrast", "random", "plain": margin drops (B,), each margin(x) - margin(x with pixels deleted).
    """
    keep = [1 - top_mask(m, fraction, torch.Generator().manual_seed(seed)) for m in (contrast_maps, plain_maps)]
    keep.insert(1, 1 - top_mask(torch.zeros_like(contrast_maps), fraction, torch.Generator().manual_seed(seed)))
    inputs = torch.cat([x] + [blend(x, baseline, k) for k in keep])  # (4B, 3, H, W)
    margins = logit_margin(model, inputs, a.repeat(4), b.repeat(4)).view(4, -1)  # (4, B)
    drops = margins[0] - margins[1:]
    return {"contrast": drops[0], "random": drops[1], "plain": drops[2]}


# --- class discrimination of a grid ------------------------------------------------------------------------------


def class_discrimination(maps: torch.Tensor) -> torch.Tensor:
    """Mean Pearson correlation between the maps of the different classes of each image, (B,); lower is better.

    Args:
        maps: (B, k, H, W), the k class maps of each image.

    A constant map (e.g. all zero) has no correlation; pairs with one are left out, and an image with fewer than
    two non-constant maps gives NaN.
    """
    b, k = maps.shape[:2]
    flat = maps.reshape(b, k, -1).double()
    centred = flat - flat.mean(-1, keepdim=True)
    norm = centred.norm(dim=-1)  # (B, k)
    valid = norm > 1e-12
    unit = centred / norm.clamp(min=1e-12).unsqueeze(-1)
    corr = unit @ unit.transpose(1, 2)  # (B, k, k)
    pair = valid[:, :, None] & valid[:, None, :] & ~torch.eye(k, dtype=torch.bool, device=maps.device)
    count = pair.sum((1, 2))
    total = (corr * pair).sum((1, 2))
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, math.nan)).float()


# --- the model randomisation sanity check -------------------------------------------------------------------------


def rankdata(v: torch.Tensor) -> torch.Tensor:
    """Ranks of a 1-D tensor, ties given their average rank (as scipy.stats.rankdata)."""
    values, order = torch.sort(v.double())
    _, inverse, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average = ends - (counts.double() - 1) / 2  # 1-based mean rank of each run of equal values
    ranks = torch.empty_like(values)
    ranks[order] = average[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between a[i] and b[i] (any shape after the batch dim), (B,); NaN if constant."""
    out = []
    for u, v in zip(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), strict=True):
        ru, rv = rankdata(u), rankdata(v)
        ru, rv = ru - ru.mean(), rv - rv.mean()
        den = ru.norm() * rv.norm()
        out.append((ru @ rv / den).item() if den > 0 else math.nan)
    return torch.tensor(out, dtype=torch.float32)


def cascade_units(model: nn.Module) -> list[str]:
    """Weight-holding modules from the output back to the input: top-level children, sequential blocks split.

    For timm's tf_efficientnet_lite0: classifier, bn2, conv_head, blocks.6, blocks.5, ..., bn1, conv_stem.
    """
    units = []
    for name, child in reversed(list(model.named_children())):
        if not _has_weights(child):
            continue
        if isinstance(child, nn.Sequential | nn.ModuleList) and len(child) > 1:
            units += [f"{name}.{sub}" for sub, c in reversed(list(child.named_children())) if _has_weights(c)]
        else:
            units.append(name)
    return units


def _has_weights(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def randomise(model: nn.Module, names: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of `model` with the named modules re-initialised (seeded); the original is left as it was.

    Every sub-module with `reset_parameters` gets its default initialisation (convolutions and linear layers:
    Kaiming-uniform; batch norms: weight 1, bias 0, running statistics reset).
    """
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    devices = [d for d in {p.device for p in clone.parameters()} if d.type == "cuda"]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name in names:
            for m in modules[name].modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
    return clone


def cascading_randomisation(model: nn.Module, levels: int, seed: int = 0) -> list[tuple[tuple[str, ...], nn.Module]]:
    """`levels` randomised copies, the i-th with the top i units of `cascade_units` re-initialised."""
    units = cascade_units(model)[:levels]
    return [(tuple(units[: i + 1]), randomise(model, units[: i + 1], seed)) for i in range(len(units))]


def sanity_check(
    explain: Explainer, model: nn.Module, x: torch.Tensor, randomised: Sequence[nn.Module]
) -> torch.Tensor:
    """Spearman correlation between each map and the map of the same input on each randomised model, (L, B).

    A method that explains the model changes when the weights change (low correlation); a map that ignores the
    weights (an edge detector) keeps a correlation of 1 (Adebayo et al. 2018).
    """
    reference = explain(model, x)
    return torch.stack([spearman(reference, explain(m, x)) for m in randomised])
