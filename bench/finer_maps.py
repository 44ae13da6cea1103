"""Candidates for finer contrast maps, measured on held-out photos (issue 13).

    python bench/finer_maps.py --out /tmp/finer.csv [--limit N] [--candidates base,s320,...] [--sanity-every 4]

For every photo of ImageNet val dev (300 ILSVRC2012 validation images squashed to 227 x 227, object boxes) and every
candidate: top-1, the label's group-contrast map (label + the two most probable other classes, as `teaching
evaluate`), its mass inside the union of the label's boxes, the same mass for a centred Gaussian (sigma = crop / 6),
the pointing game, the margin drop of its top 20% pixels (vs random 20%), the randomisation check (every
`--sanity-every`-th photo, top 2 units), the evidence of the other classes relative to the label's, and the time
to make the grid's plain and contrast maps. The photos are split in two halves by the CRC32 of the name: `tune`
(parity 0) and `report` (parity 1). One row per (photo, candidate) is appended to the CSV as soon as it is made.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from teaching import metrics
from teaching.cams import compute_cams, group_contrast, upsample
from teaching.evaluation.data import read_labelled
from teaching.images import load_image
from teaching.models import Preprocess, load_backbone, preprocess_image

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
Maps = tuple[torch.Tensor, torch.Tensor]  # plain (k, S, S), contrast (k, S, S): raw (not scaled), >= 0


def gradcam_maps(model: torch.nn.Module, x: torch.Tensor, classes: list[int], linear: torch.nn.Module) -> Maps:
    """Plain and group-contrast Grad-CAM at bn2 (closed form), upsampled to the input, not scaled."""
    out = compute_cams(model, x, classes, "gradcam", "bn2", None, None, linear)
    signed = out.signed  # (B, k, h, w)
    assert signed is not None
    size = (x.shape[-2], x.shape[-1])
    plain = upsample(signed.clamp_min(0), size, normalise=False)
    contrast = upsample(group_contrast(signed), size, normalise=False)
    return plain, contrast


def layer_maps(model: torch.nn.Module, x: torch.Tensor, classes: list[int], layer: str) -> Maps:
    """LayerCAM at `layer`, plain and group contrast (two backward passes), upsampled, not scaled."""
    size = (x.shape[-2], x.shape[-1])
    plain = compute_cams(model, x, classes, "layercam", layer).raw
    contrast = compute_cams(model, x, classes, "layercam", layer, "group").raw
    return upsample(plain, size, normalise=False), upsample(contrast, size, normalise=False)


def unit(m: torch.Tensor) -> torch.Tensor:
    """Maps divided by their maximum (a zero map stays zero)."""
    return m / m.flatten(-2).amax(-1)[..., None, None].clamp_min(1e-12)


def shifted(x: torch.Tensor, shifts: list[tuple[int, int, bool]], pad: int) -> torch.Tensor:
    """The input shifted by (dy, dx) pixels (reflect padding) and flipped, one per shift, (n, 3, S, S)."""
    s = x.shape[-1]
    big = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    outs = []
    for dy, dx, flip in shifts:
        v = big[:, :, pad + dy : pad + dy + s, pad + dx : pad + dx + s]
        outs.append(v.flip(-1) if flip else v)
    return torch.cat(outs)


def unshift(maps: torch.Tensor, shifts: list[tuple[int, int, bool]], pad: int) -> torch.Tensor:
    """Average of maps (n, B..., S, S) of the shifted inputs, mapped back to the original frame."""
    s = maps.shape[-1]
    canvas = maps.new_zeros(maps.shape[1:-2] + (s + 2 * pad, s + 2 * pad))
    count = torch.zeros(s + 2 * pad, s + 2 * pad)
    for m, (dy, dx, flip) in zip(maps, shifts, strict=True):
        m = m.flip(-1) if flip else m
        canvas[..., pad + dy : pad + dy + s, pad + dx : pad + dx + s] += m
        count[pad + dy : pad + dy + s, pad + dx : pad + dx + s] += 1
    return canvas[..., pad : pad + s, pad : pad + s] / count[pad : pad + s, pad : pad + s]


def augmented(shifts: list[tuple[int, int, bool]]) -> Callable[..., Maps]:
    pad = max(max(abs(dy), abs(dx)) for dy, dx, _ in shifts) or 1

    def fn(model: torch.nn.Module, x: torch.Tensor, classes: list[int], linear: torch.nn.Module) -> Maps:
        xs = shifted(x, shifts, pad)
        out = compute_cams(model, xs, classes, "gradcam", "bn2", None, None, linear)
        signed = out.signed  # (n, k, h, w)
        assert signed is not None
        up = upsample(signed, (x.shape[-2], x.shape[-1]), normalise=False)  # (n, k, S, S) signed
        mean = unshift(up, shifts, pad)[None]  # (1, k, S, S)
        return mean.clamp_min(0), group_contrast(mean)

    return fn


def fused(layer: str, mode: str) -> Callable[..., Maps]:
    def fn(model: torch.nn.Module, x: torch.Tensor, classes: list[int], linear: torch.nn.Module) -> Maps:
        p1, c1 = gradcam_maps(model, x, classes, linear)
        p2, c2 = layer_maps(model, x, classes, layer)
        if mode == "mean":
            return (unit(p1) + unit(p2)) / 2 * p1.amax((-2, -1), keepdim=True), (unit(c1) + unit(c2)) / 2 * c1.amax(
                (-2, -1), keepdim=True
            )
        return (p1 * unit(p2)).sqrt() * p1.sqrt(), (c1 * unit(c2)).sqrt() * c1.sqrt()

    return fn


SHIFT4 = [(-8, -8, False), (-8, 8, False), (8, -8, False), (8, 8, False)]
SHIFT2F = [(0, 0, False), (0, 0, True)]
CANDIDATES: dict[str, tuple[int, Callable[..., Maps]]] = {
    "base": (224, gradcam_maps),
    "s256": (256, gradcam_maps),
    "s288": (288, gradcam_maps),
    "s320": (320, gradcam_maps),
    "s384": (384, gradcam_maps),
    "s448": (448, gradcam_maps),
    "flip2": (224, augmented(SHIFT2F)),
    "shift4": (224, augmented(SHIFT4)),
    "shift4flip": (224, augmented(SHIFT4 + [(dy, dx, True) for dy, dx, _ in SHIFT4])),
    "fuse_b4_mean": (224, fused("blocks.4", "mean")),
    "fuse_b4_geo": (224, fused("blocks.4", "geo")),
    "s320_flip2": (320, augmented(SHIFT2F)),
}


def gaussian(side: int) -> torch.Tensor:
    c = (torch.arange(side) + 0.5 - side / 2) / (side / 6)
    return torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / 2)


def box_mask(boxes: torch.Tensor, side: int) -> torch.Tensor:
    mask = torch.zeros(side, side)
    for x0, y0, x1, y1 in boxes.tolist():
        mask[max(0, round(y0)) : max(0, round(y1)), max(0, round(x0)) : max(0, round(x1))] = 1
    return mask


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--images", type=Path, default=FIXTURES / "imagenet-val-dev")
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--sanity-every", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bb = load_backbone("efficientnet_lite0")
    model = bb.model
    pre0 = bb.spec.preprocess
    has_boxes = (args.images / "boxes.csv").is_file()
    boxes_csv = args.images / "boxes.csv" if has_boxes else None
    samples = read_labelled(args.images / "images", args.images / "labels.csv", boxes_csv)
    if args.limit:
        samples = samples[: args.limit]
    names = args.candidates.split(",")
    randomised = [m for _, m in metrics.cascading_randomisation(model, 2, seed=0)]
    done: set[tuple[str, str]] = set()
    if args.out.is_file():
        with args.out.open() as f:
            done = {(r["image"], r["candidate"]) for r in csv.DictReader(f)}
    fields = [
        "image", "split", "candidate", "side", "label", "pred", "prob", "box_frac", "mass", "gauss_mass", "pointing",
        "contrast_drop", "random_drop", "others_rel", "sanity_1", "sanity_2", "ms",
    ]  # fmt: skip
    new = not args.out.is_file()
    with args.out.open("a", newline="") as f:
        w = csv.DictWriter(f, fields)
        if new:
            w.writeheader()
        for i, s in enumerate(samples):
            img = load_image(s.path)
            split = "report" if zlib.crc32(s.name.encode()) % 2 else "tune"
            for name in names:
                if (s.name, name) in done:
                    continue
                side, fn = CANDIDATES[name]
                resize = round(side * pre0.resize / pre0.size)
                pre = Preprocess(side, resize, pre0.interpolation, pre0.mean, pre0.std)
                x, crop = preprocess_image(img, pre, torch.device("cpu"))
                with torch.no_grad():
                    logits = model(x)[0]
                label = s.label
                grid = [label] + [c for c in logits.argsort(descending=True).tolist() if c != label][:2]
                runner = max(grid[1:], key=lambda c: float(logits[c]))
                linear = bb.head("gradcam")
                t0 = time.perf_counter()
                plain, contrast = (t.detach() for t in fn(model, x, grid, linear))
                ms = (time.perf_counter() - t0) * 1000
                plain, contrast = plain[0], contrast[0]  # (k, S, S)
                m = contrast[0]
                row: dict[str, object] = {
                    "image": s.name, "split": split, "candidate": name, "side": side, "label": label,
                    "pred": int(logits.argmax()), "prob": float(torch.softmax(logits, 0)[label]), "ms": round(ms, 1),
                }  # fmt: skip
                peak = contrast.flatten(1).amax(1)
                row["others_rel"] = float(peak[1:].max() / peak[0]) if peak[0] > 0 else math.nan
                if s.boxes:
                    boxes = metrics.boxes_to_crop(torch.tensor(s.boxes), crop, side)
                    mask = box_mask(boxes, side)
                    g = gaussian(side)
                    row["box_frac"] = float(mask.mean())
                    row["mass"] = float((m * mask).sum() / m.sum()) if m.sum() > 0 else math.nan
                    row["gauss_mass"] = float((g * mask).sum() / g.sum())
                    gen = torch.Generator().manual_seed(zlib.crc32(s.name.encode()))
                    hit = metrics.pointing_game(m[None], [boxes], metrics.pointing_tolerance(side), gen)
                    row["pointing"] = int(hit[0])
                black = metrics.black_like(x, pre.mean, pre.std)
                a, b = torch.tensor([label]), torch.tensor([runner])
                seed = zlib.crc32(s.name.encode())
                cf = metrics.contrastive_faithfulness(model, x, m[None], plain[:1], a, b, black, seed=seed)
                row["contrast_drop"], row["random_drop"] = float(cf["contrast"][0]), float(cf["random"][0])
                if args.sanity_every and i % args.sanity_every == 0:

                    def label_map(
                        mod: torch.nn.Module, xx: torch.Tensor, fn: Callable[..., Maps] = fn, grid: list[int] = grid
                    ) -> torch.Tensor:
                        lin = dict(mod.named_modules())[bb.spec.classifier]
                        return fn(mod, xx, grid, lin)[1][0, :1].detach()

                    rho = metrics.sanity_check(label_map, model, x, randomised)[:, 0].tolist()
                    row["sanity_1"], row["sanity_2"] = rho
                w.writerow(row)
                f.flush()
            print(f"{i + 1}/{len(samples)} {s.name}", flush=True)


if __name__ == "__main__":
    main()
