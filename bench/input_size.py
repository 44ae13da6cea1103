"""The embedded model's accuracy and the explore grid's time at several input sizes (issue 13, finer maps).

    python bench/input_size.py --sizes 224,256,288,320 [--backbone efficientnet_lite0] [--repeats 3]

Accuracy on realistic-resolution photos, not the 227-px squashed ImageNet val dev: `flickr-ccby-dev` (146 crops of
CC BY Flickr photos at 299 x 299, 1000-way top-1/top-5) and the species photos (1000-way top-1 and top-1 within the
photo's look-alike group). Time, per species photo, the median of `--repeats` runs, every size in the same run
and in alternating order, so the ratios are comparable on a shared CPU: `maps`, the grid's maps (`api.explain`
of the group: Grad-CAM plain row and group-contrast row, two calls), and `page`, the whole Explore request without
Gradio (`service.explore`: read the photo, the maps, the trait lead, the cards' PNGs). Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from teaching import api, service
from teaching.evaluation.data import look_alike_groups, read_labelled, read_species
from teaching.images import load_image
from teaching.models import load_backbone

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="224,256,288,320")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--fixtures", type=Path, default=FIXTURES)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base = load_backbone(args.backbone)
    pre0 = base.spec.preprocess
    sizes = [int(s) for s in args.sizes.split(",")]
    nets = {}
    for side in sizes:
        pre = dataclasses.replace(pre0, size=side, resize=round(side * pre0.resize / pre0.size))
        nets[side] = dataclasses.replace(base, spec=dataclasses.replace(base.spec, preprocess=pre))
    dev = args.fixtures / "flickr-ccby-dev"
    flickr = read_labelled(dev / "images", dev / "labels.csv")
    species = read_species(args.fixtures / "species")
    groups = look_alike_groups()
    photos = {s.name: load_image(s.path) for s in [*flickr, *species]}
    out: dict[int, dict[str, object]] = {}
    for side, bb in nets.items():
        row: dict[str, object] = {"size": side}
        for name, samples in (("flickr", flickr), ("species", species)):
            top1 = top5 = in_group = 0
            for s in samples:
                x, _ = bb.preprocess(photos[s.name])
                with torch.no_grad():
                    logits = bb.model(x)[0]
                top = logits.topk(5).indices.tolist()
                top1 += top[0] == s.label
                top5 += s.label in top
                if s.group:
                    g = list(groups[s.group])
                    in_group += g[int(logits[g].argmax())] == s.label
            n = len(samples)
            row[f"{name}_n"] = n
            row[f"{name}_top1"] = round(100 * top1 / n, 1)
            row[f"{name}_top5"] = round(100 * top5 / n, 1)
            if name == "species":
                row["species_group_top1"] = round(100 * in_group / n, 1)
        out[side] = row
    maps: dict[int, list[float]] = {side: [] for side in sizes}
    page: dict[int, list[float]] = {side: [] for side in sizes}
    for r in range(args.repeats):
        for side in sizes if r % 2 == 0 else sizes[::-1]:  # alternate the order: no size always runs first
            bb = nets[side]
            t0 = time.perf_counter()
            for s in species:
                prepared = api.prepare(photos[s.name], bb)
                api.explain(prepared, list(s.classes), method="gradcam")
                api.explain(prepared, list(s.classes), method="contrastive")
            maps[side].append((time.perf_counter() - t0) / len(species) * 1000)
            base.spec = bb.spec  # the cached backbone the service loads now preprocesses at this size
            t0 = time.perf_counter()
            for s in species:
                service.explore(s.path, s.group, "gradcam")
            page[side].append((time.perf_counter() - t0) / len(species) * 1000)
    base.spec = nets[sizes[0]].spec
    for side in sizes:
        for name, runs in (("maps", maps), ("page", page)):
            ms = statistics.median(runs[side])
            out[side][f"{name}_ms"] = round(ms, 1)
            out[side][f"{name}_x"] = round(ms / statistics.median(runs[sizes[0]]), 2)
        print(json.dumps(out[side]), flush=True)


if __name__ == "__main__":
    main()
