"""CAM maps after the engine: bilinear upsampling to the image, min-max scaling to [0, 1], placing on the photo.

`upsample` is the resize pytorch-grad-cam's `scale_cam_image` does (cv2 bilinear, half-pixel centres) followed by
the per-map scaling, written so that the large tensor is produced once: the scaling is affine and bilinear
weights sum to 1, so the small maps are scaled first, with the extremes of the resized map read from a few of its
rows and columns. `minmax` scales maps as they are; `place_maps` puts maps of the model's crop back onto the
whole photo. Imports only torch and NumPy.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager

import numpy as np
import torch
import torch.nn.functional as F


def float32_maths(device: torch.device) -> AbstractContextManager[object]:
    """Autocast off: the engine's own matmuls on float32 tensors stay float32 inside a caller's autocast region."""
    return torch.autocast(device.type, enabled=False)


def upsample(maps: torch.Tensor, size: tuple[int, int], normalise: bool = True) -> torch.Tensor:
    """Bilinear resize of (B, k, h, w) maps to `size` (H, W) in float32, then each map min-max scaled to [0, 1].

    The resize is cv2's bilinear (half-pixel centres), as in pytorch-grad-cam's `scale_cam_image`. NaN reads as 0.

    With `normalise`, the result is (up(m) - min) / (max - min), min and max those of the resized map up(m), a flat
    one giving 0. Bilinear weights sum to 1, so up is affine-equivariant: up((m - lo) / (hi - lo)) is the same map.
    Enlarging, the scaling is therefore done on the small maps, with the extremes of up(m) read from a few of its
    rows and columns (`_resized_extremes`), and the large tensor is written once, by the resize (then clamped in
    place against rounding). Shrinking, the large tensor is the input: resize, then scale.
    """
    low = torch.nan_to_num(maps.float(), nan=0.0)
    if not normalise:
        return F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    low = low - low.amin((-2, -1), keepdim=True)  # >= 0: a flat map is exactly 0 from here on, and stays 0
    with float32_maths(low.device):
        if size[0] < low.shape[-2] or size[1] < low.shape[-1]:
            return _scale_(_resize(low, size))
        lo, hi = _resized_extremes(low, size)  # (B, k, 1, 1) each
        low = low.sub_(lo).div_((hi - lo).clamp_min(torch.finfo(torch.float32).tiny))
        return _resize(low, size).clamp_(0.0, 1.0)


MATMUL_RESIZE_MAX = 32
"""On a CPU, maps up to this side are resized by two matmuls with the bilinear weights (`_resize`)."""


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """F.interpolate(bilinear, align_corners=False) of float32 maps (B, k, h, w) to `size`.

    On a CPU, small maps go through rows (H, h) @ maps @ cols (w, W).T with the weights `_bilinear_weights`
    instead: the same sums to float32 rounding (<= 1.5e-6 on maps in [0, 1]), written at memory speed (1000 maps
    7x7 -> 224x224 on one thread: 100 ms against 155 ms, most of either the first touch of the 200 MB), and a map
    constant along an axis stays exactly constant (F.interpolate weighs a lone input row (1 - a) + a).
    """
    h, w = maps.shape[-2:]
    if maps.device.type != "cpu" or max(h, w) > MATMUL_RESIZE_MAX:
        return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return _bilinear_weights(h, size[0]) @ (maps @ _bilinear_weights(w, size[1]).T)


def _resized_extremes(maps: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of each of the maps (B, k, h, w) once resized to `size` by `upsample`, (B, k, 1, 1) each.

    Inside one input cell [i, i + 1] x [j, j + 1] the resized map is bilinear, so affine along each axis: over
    the output samples in that cell (a grid of rows and columns) its extremes lie on the first or last of those
    rows and the first or last of those columns. Those rows and columns of the resized map suffice
    (`_cell_end_weights`): for 7 x 7 -> 224 x 224, 14 x 14 values instead of 50,176.
    """
    rows = _cell_end_weights(maps.shape[-2], size[0]).to(maps.device)  # (r, h)
    cols = _cell_end_weights(maps.shape[-1], size[1]).to(maps.device)  # (c, w)
    samples = rows @ maps @ cols.T  # (B, k, r, c)
    lo, hi = samples.flatten(-2).aminmax(dim=-1)
    return lo[..., None, None], hi[..., None, None]


@functools.lru_cache(maxsize=64)
def _cell_end_weights(n_in: int, n_out: int) -> torch.Tensor:
    """The rows (r, n_in) of `_bilinear_weights` of the outputs that open or close a run of outputs in one cell."""
    i0, _ = _source_positions(n_in, n_out)
    ends = torch.ones(n_out, dtype=torch.bool)
    changes = i0[1:] != i0[:-1]
    ends[1:-1] = changes[:-1] | changes[1:]  # the first of its cell (changes before) or the last (changes after)
    return _bilinear_weights(n_in, n_out)[ends]


@functools.lru_cache(maxsize=64)
def _bilinear_weights(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float32: the weight F.interpolate(bilinear, align_corners=False) gives each input on an axis."""
    i0, lam = _source_positions(n_in, n_out)
    weights = torch.zeros(n_out, n_in)
    rows = torch.arange(n_out)
    weights.index_put_((rows, i0), 1 - lam, accumulate=True)
    weights.index_put_((rows, (i0 + 1).clamp_max(n_in - 1)), lam, accumulate=True)
    return weights


def _source_positions(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each output's input cell i0 (n_out,) and its offset lam in it: it interpolates inputs i0 and i0 + 1.

    Output i samples the input at s = (i + 1/2) n_in / n_out - 1/2, clamped to [0, n_in - 1]. The positions are
    computed in float32 as ATen's `area_pixel_compute_source_index` does, so the weights are the resize's own to
    its rounding (a sample on a cell border may land in either cell: both give it the same value). Clamped to the
    last input, lam is 0: it has weight 1 exactly, where ATen weighs it (1 - lam) + lam.
    """
    scale = torch.tensor(n_in, dtype=torch.float32) / n_out
    s = (scale * (torch.arange(n_out, dtype=torch.float32) + 0.5) - 0.5).clamp(0.0, n_in - 1)
    i0 = s.floor().long()
    return i0, s - i0


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each map (last two dims) scaled to [0, 1] as (m - min) / (max - min), in float32; a flat map gives 0.

    No epsilon is added, so the scaling does not depend on the map's magnitude (pytorch-grad-cam adds 1e-7 but
    scales twice, which comes to the same within 1e-6).
    """
    return _scale_(torch.nan_to_num(maps.float(), nan=0.0))  # nan_to_num returns a new tensor


def _scale_(maps: torch.Tensor) -> torch.Tensor:
    """`minmax` in place on a float32 NaN-free tensor that the caller owns: one pass for min and max, no copies."""
    lo, hi = maps.flatten(-2).aminmax(dim=-1)  # (..., ) each
    maps.sub_(lo[..., None, None]).div_((hi - lo).clamp_min(torch.finfo(torch.float32).tiny)[..., None, None])
    return maps


def row_scale(raw: torch.Tensor, size: tuple[int, int]) -> float:
    """The strongest value of (k, h, w) maps >= 0 once resized to `size` (H, W) by `upsample(normalise=False)`.

    Read from a few rows and columns of the resized maps (`_resized_extremes`), so the large maps are not made.
    Dividing every map of a row by it puts the row on one scale: its strongest panel reaches 1 and a class with a
    tenth of the evidence is drawn at a tenth. 0 when every map is 0.
    """
    low = torch.nan_to_num(raw.float(), nan=0.0).clamp_min(0.0).unsqueeze(0)  # (1, k, h, w)
    with float32_maths(low.device):
        _, hi = _resized_extremes(low, size)
    return float(hi.max()) if hi.numel() else 0.0


def scaled(raw: torch.Tensor, size: tuple[int, int], scale: float) -> torch.Tensor:
    """(k, h, w) maps >= 0 resized to `size` (H, W) and divided by `scale` (`row_scale`), clipped to [0, 1]."""
    low = torch.nan_to_num(raw.float(), nan=0.0).clamp_min(0.0).unsqueeze(0)
    with float32_maths(low.device):
        out = _resize(low, size)[0]
    if scale <= 0.0:
        return out.zero_()
    return out.div_(scale).clamp_(0.0, 1.0)


def place_maps(
    raw: torch.Tensor, box: tuple[int, int, int, int], size: tuple[int, int], scale: float | None = None
) -> np.ndarray:
    """Scale (k, h, w) maps to the crop box (x0, y0, x1, y1) and paste them into a zero frame of `size` =
    (width, height): (k, H, W) float32. Each map is min-max scaled to [0, 1]; with `scale` (`row_scale`), every
    map is divided by it instead (one scale for the row)."""
    x0, y0, x1, y1 = box
    if scale is None:
        inner = upsample(raw.unsqueeze(0), (y1 - y0, x1 - x0))[0]  # (k, y1-y0, x1-x0)
    else:
        inner = scaled(raw, (y1 - y0, x1 - x0), scale)
    width, height = size
    out = np.zeros((raw.shape[0], height, width), dtype=np.float32)
    out[:, y0:y1, x0:x1] = inner.detach().cpu().numpy()
    return out
