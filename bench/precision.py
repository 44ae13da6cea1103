"""How far the accelerated path's maps move from float32: the numbers behind `teaching.accel.TOLERANCE`.

    .venv/bin/python -m bench.precision                      # CPU, 12 ImageNet validation photos
    python3 -m bench.precision --device cuda                 # the same on a GPU (graphs on)

For each autocast dtype and method: FastCAM (channels_last + autocast, CUDA graphs on CUDA) against `compute_cams` in
float32 on the real efficientnet_lite0 weights and each photo's top-3 classes. Reported per map after
`maps.upsample` (min-max scaled to [0, 1] at input size): the max and median of the max abs difference, and the
lowest Pearson correlation; plus the largest logit difference.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from teaching.cams import compute_cams
from teaching.cams.accel import FastCAM
from teaching.cams.maps import upsample
from teaching.images import load_image
from teaching.models import load_backbone

REPO = Path(__file__).resolve().parents[1]


def photos(n: int) -> list[Path]:
    root = Path(os.environ.get("TEACHING_FIXTURES", REPO.parent / "shared" / "fixtures")) / "imagenet-val-dev"
    return sorted(p for p in (root / "images").glob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--methods", default="gradcam,gradcampp,layercam,cam")
    parser.add_argument("--dtypes", default="float16,bfloat16")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    backbone = load_backbone("efficientnet_lite0", device=args.device)
    files = photos(args.photos)
    if not files:
        parser.error("no photos: set TEACHING_FIXTURES")
    x = torch.cat([backbone.preprocess(load_image(f))[0] for f in files])  # (N, 3, 224, 224)
    with torch.no_grad():
        top = backbone.model(x).topk(3).indices  # (N, 3)
    size = (x.shape[-2], x.shape[-1])
    rows = []
    for method in args.methods.split(","):
        linear = backbone.model.classifier if method == "cam" else None
        ref = compute_cams(backbone.model, x, top, method, backbone.spec.target_layer, linear=linear)
        ref_maps = upsample(ref.raw, size)
        for name in args.dtypes.split(","):
            dtype = getattr(torch, name)
            fast = FastCAM(backbone.model, backbone.spec.target_layer, method, linear=linear, dtype=dtype)
            out = fast(x, top)
            maps = upsample(out.raw, size)
            per_map = (maps - ref_maps).abs().amax((2, 3)).flatten().cpu()  # (N k,)
            a, b = maps.flatten(2).cpu().numpy(), ref_maps.flatten(2).cpu().numpy()
            corr = min(np.corrcoef(a[i, j], b[i, j])[0, 1] for i in range(a.shape[0]) for j in range(a.shape[1]))
            rows.append(
                {
                    "method": method,
                    "dtype": name,
                    "max_abs_diff": float(per_map.max()),
                    "median_max_abs_diff": float(per_map.median()),
                    "min_corr": float(corr),
                    "max_logit_diff": float((out.logits - ref.logits).abs().max()),
                    "graphs": fast.graphs,
                }
            )
    print(f"{len(files)} photos, {backbone.name}, device {args.device}")
    print("| method | dtype | max abs diff | median per map | min correlation | max logit diff | graphs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['method']} | {r['dtype']} | {r['max_abs_diff']:.4f} | {r['median_max_abs_diff']:.4f} "
            f"| {r['min_corr']:.5f} | {r['max_logit_diff']:.3f} | {r['graphs']} |"
        )
    if args.out:
        args.out.write_text(json.dumps({"device": args.device, "photos": len(files), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
