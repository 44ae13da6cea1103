"""The simulated-learner study: `python -m teaching simulate`.

Simulated learners (the learner model of `teaching.selection`, each with its own noisy copy of the hypotheses and
a chance of answering at random) are taught k photos of a group chosen at random, by STRICT and by EXPLAIN, then
tested on held-out photos of the group. For each learner the group's photos are split anew (a third of each
species held out for the test); only photos the model gets right (`teaching.pool`) may teach. The three teachers
teach the same learner (paired), and the table gives mean test accuracy with 95% bootstrap intervals over learners.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from teaching.errors import TeachingError
from teaching.evaluation.summary import bootstrap
from teaching.galleries import Group, gallery_photos, load_groups
from teaching.pool import PoolPhoto, group_pool
from teaching.selection import STRATEGIES, model_of, reduce, select, with_hypotheses

COLOURS = {"random": (150, 150, 150), "strict": (230, 145, 56), "explain": (46, 117, 182)}


def split(y: np.ndarray, rng: np.random.Generator, held_out: float = 1 / 3) -> tuple[np.ndarray, np.ndarray]:
    """Train and test positions: a third of each species (at least one) held out; a lone photo stays in train."""
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.where(y == c)[0])
        n = max(1, round(len(idx) * held_out)) if len(idx) > 1 else 0
        test += list(idx[:n])
        train += list(idx[n:])
    return np.array(sorted(train)), np.array(sorted(test))


def simulate_group(
    group: Group,
    photos: Sequence[PoolPhoto],
    k_max: int = 6,
    learners: int = 200,
    noise: float = 0.5,
    answer_noise: float = 0.1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Strategy -> test accuracy (learners, k_max + 1) after k = 0..k_max teaching photos."""
    ids = [s.id for s in group.species]
    y = np.array([ids.index(p.species_id) for p in photos])
    X = reduce(np.stack([p.features for p in photos]))
    right = np.array([p.verdict.right for p in photos])
    entropy = np.array([p.explain_entropy for p in photos])
    n_classes = len(ids)
    out = {s: np.zeros((learners, k_max + 1)) for s in STRATEGIES}
    for r in range(learners):
        rng = np.random.default_rng(seed * 100_003 + r)
        train, test = split(y, rng)
        teacher = model_of(X[train], y[train], n_classes, rng)
        scale = np.linalg.norm(teacher.hyps[0]) / math.sqrt(teacher.hyps[0].size)
        own = teacher.hyps + rng.normal(size=teacher.hyps.shape) * noise * scale  # the learner's own hypotheses
        learner = with_hypotheses(X[train], y[train], own)
        tested = with_hypotheses(X[test], y[test], own)
        correct = (tested.likelihood == 1.0).mean(1)  # (H,) share of test photos each hypothesis gets right
        candidates = [i for i in range(len(train)) if right[train[i]]]
        for strategy in STRATEGIES:
            order = select(
                teacher, k_max, strategy, np.random.default_rng(rng.integers(2**32)), candidates, entropy[train]
            )
            post = np.full(len(own), 1.0 / len(own))
            for k in range(k_max + 1):
                if k > 0 and k <= len(order):
                    post = post * learner.likelihood[:, order[k - 1]]
                    post /= post.sum()
                out[strategy][r, k] = (1 - answer_noise) * float(post @ correct) + answer_noise / n_classes
    return out


def line_chart(results: dict[str, dict[str, list[tuple[float, float, float]]]]) -> Image.Image:
    """One panel per group: mean test accuracy (95% interval band) against the number of teaching photos."""
    font = ImageFont.load_default(size=12)
    pw, ph, pad = 260, 180, 40
    img = Image.new("RGB", (len(results) * (pw + pad) + pad, ph + 2 * pad + 20), "white")
    draw = ImageDraw.Draw(img, "RGBA")
    for g, (group_id, by_strategy) in enumerate(results.items()):
        x0, y0 = pad + g * (pw + pad), pad
        values = [v for cells in by_strategy.values() for c in cells for v in c]
        lo, hi = math.floor(min(values) * 10) / 10, math.ceil(max(values) * 10) / 10
        k_max = len(next(iter(by_strategy.values()))) - 1

        def px(
            k: float, v: float, k_max: int = k_max, lo: float = lo, hi: float = hi, x0: int = x0
        ) -> tuple[float, float]:
            return x0 + k / max(k_max, 1) * pw, pad + ph - (v - lo) / ((hi - lo) or 1) * ph

        draw.rectangle((x0, y0, x0 + pw, y0 + ph), outline=(120, 120, 120))
        draw.text((x0, y0 - 16), f"{group_id}: test accuracy", fill="black", font=font)
        for v in np.arange(lo, hi + 1e-9, 0.1):
            draw.text((x0 - 30, px(0, v)[1] - 6), f"{v:.1f}", fill="black", font=font)
        for k in range(k_max + 1):
            draw.text((px(k, lo)[0] - 3, y0 + ph + 4), str(k), fill="black", font=font)
        for strategy, cells in by_strategy.items():
            colour = COLOURS[strategy]
            band = [px(k, c[1]) for k, c in enumerate(cells)] + [
                px(k, c[2]) for k, c in reversed(list(enumerate(cells)))
            ]
            draw.polygon(band, fill=(*colour, 50))
            draw.line([px(k, c[0]) for k, c in enumerate(cells)], fill=colour, width=2)
        draw.text((x0, y0 + ph + 18), "teaching photos", fill="black", font=font)
    for i, strategy in enumerate(STRATEGIES):
        draw.text((pad + i * 90, img.height - 16), strategy, fill=COLOURS[strategy], font=font)
    return img


def run(args: argparse.Namespace) -> str:
    """Simulate every group asked; write the JSON and the chart; return the Markdown table."""
    os.environ["TEACHING_GALLERY_DIR"] = str(args.photos)
    groups = load_groups()
    unknown = [g for g in args.groups if g not in groups]
    if unknown:
        raise TeachingError(f"unknown group '{unknown[0]}': one of {', '.join(groups)}")
    results: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    lines = ["| group | photos (right) | k | " + " | ".join(STRATEGIES) + " |", "| --- | --- | --- |" + " --- |" * 3]
    for group_id in args.groups:
        group = groups[group_id]
        photos = group_pool(group, gallery_photos(group))
        acc = simulate_group(group, photos, args.k_max, args.learners, args.noise, args.answer_noise, args.seed)
        results[group_id] = {
            s: [bootstrap(a[:, k], np.mean, 1000, 0) for k in range(args.k_max + 1)] for s, a in acc.items()
        }
        n_right = sum(p.verdict.right for p in photos)
        for k in range(args.k_max + 1):
            cells = [results[group_id][s][k] for s in STRATEGIES]
            text = " | ".join(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in cells)
            lines.append(f"| {group_id} | {len(photos)} ({n_right}) | {k} | {text} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "simulate.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1), encoding="utf-8"
    )
    line_chart(results).save(args.out / "simulate.png")
    table = "\n".join(lines)
    (args.out / "simulate.md").write_text(table + "\n", encoding="utf-8")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m teaching simulate", description=__doc__.split("\n\n")[1])
    default_photos = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "species"
    p.add_argument(
        "--photos",
        type=Path,
        default=Path(os.environ.get("TEACHING_GALLERY_DIR", default_photos)),
        help="a folder with one sub-folder per species (TEACHING_GALLERY_DIR layout)",
    )
    p.add_argument("--groups", nargs="+", default=["elephants", "sharks", "butterflies"])
    p.add_argument("--learners", type=int, default=300)
    p.add_argument("--k-max", type=int, default=5)
    p.add_argument("--noise", type=float, default=0.5, help="std of each learner's hypothesis noise (x the scale)")
    p.add_argument("--answer-noise", type=float, default=0.1, help="chance a learner answers at random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("simulate_out"))
    args = p.parse_args(argv)
    print(run(args))
    print(f"wrote {args.out / 'simulate.png'}, simulate.json and simulate.md")
    return 0
