"""The work on each photo: its grid of classes, the maps of every variant, the metrics, one CSV row per variant.

The grid of a photo is its label A and two other classes (the model's top predictions), or in species mode the
rest of its group; the runner-up B is the grid class the model scores highest after A. Rows are appended to the
CSV photo by photo, and a later run with the same CSV skips the rows already there.
"""

from __future__ import annotations

import csv
import math
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from teaching import metrics
from teaching.evaluation.data import EvaluationError, Sample
from teaching.evaluation.variants import MapFn, Variant
from teaching.images import load_image
from teaching.models import Backbone

GRID_SIZE = 3  # classes of a grid outside species mode: the label and the two most probable other classes
SHARE_TOLERANCE = 1e-4  # maps that differ by at most this everywhere share their perturbation results
OWN_IMPLS = ("ours", "baseline")  # their failures raise; the sanity check runs for them (peers make the same maps)
COLUMNS = [
    "image",
    "group",
    "label",
    "pred",
    "prob",
    "runner_up",
    "impl",
    "method",
    "ms",
    "avg_drop",
    "increase",
    "deletion",
    "insertion",
    "pointing",
    "discrimination",
    "blank",
    "margin",
    "contrast_drop",
    "random_drop",
    "plain_drop",
    "trait_hit",
    "trait_mass",
    "trait_area",
]

OnError = Callable[[Variant, Exception], None]


@dataclass
class Settings:
    """What every photo is evaluated with."""

    bb: Backbone
    steps: int
    seed: int
    batch_size: int
    randomised: list[nn.Module]  # cascading randomisation of the model (sanity check)


@dataclass(frozen=True)
class Photo:
    """One photo ready for the metrics, shared by all its variants."""

    x: torch.Tensor  # (1, 3, S, S) the model's input
    grid: list[int]  # the classes of the maps, the label A first
    runner_up: int  # B: the grid class the model scores highest after A
    seed: int  # image_seed of the photo
    black: torch.Tensor  # (1, 3, S, S) a black image in the model's normalisation
    boxes: list[torch.Tensor] | None  # the object boxes in the input's pixels (pointing game), None without boxes
    traits: torch.Tensor | None  # (n, 4) the label's trait part boxes in the input's pixels, None without any
    row: dict[str, Any]  # the columns every row of the photo shares


def image_seed(seed: int, name: str) -> int:
    """A per-photo seed that does not depend on the order of the run (so a resumed run gives the same numbers)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


def same_maps(a: torch.Tensor, b: torch.Tensor, tol: float = SHARE_TOLERANCE) -> bool:
    """True when two maps differ by at most `tol` at every pixel (e.g. Grad-CAM and the closed-form CAM)."""
    return a.shape == b.shape and bool((a - b).abs().max() <= tol)


def grid_maps(
    fn: MapFn, variant: Variant, model: nn.Module, x: torch.Tensor, grid: Sequence[int], b: int
) -> torch.Tensor:
    """The maps a learner would see, (k, S, S), the label's first.

    Plain and group variants: one map per grid class. Pair variant: "A rather than B" and "B rather than A".
    """
    if variant.contrast == "pair":
        a = grid[0]
        return torch.cat([fn(model, x, [a], "pair", b), fn(model, x, [b], "pair", a)])
    return fn(model, x, grid, variant.contrast, None)


def prepare(sample: Sample, st: Settings) -> Photo:
    """Load and preprocess the photo, predict, and choose its grid and runner-up."""
    bb = st.bb
    x, crop = bb.preprocess(load_image(sample.path))
    with torch.no_grad():
        logits = bb.model(x)[0].float()
    label = sample.label
    if sample.classes:
        grid = list(sample.classes)
    else:
        grid = [label] + [c for c in logits.argsort(descending=True).tolist() if c != label][: GRID_SIZE - 1]
    runner_up = max(grid[1:], key=lambda c: float(logits[c]))
    side = x.shape[-1]
    boxes = [metrics.boxes_to_crop(torch.tensor(sample.boxes), crop, side).to(x.device)] if sample.boxes else None
    traits = metrics.boxes_to_crop(torch.tensor(sample.traits), crop, side) if sample.traits else None
    row = {
        "image": sample.name,
        "group": sample.group,
        "label": label,
        "pred": int(logits.argmax()),
        "prob": float(bb.probabilities(logits)[label]),
        "runner_up": runner_up,
        "margin": float(logits[label] - logits[runner_up]),
    }
    black = metrics.black_like(x, bb.spec.preprocess.mean, bb.spec.preprocess.std)
    return Photo(x, grid, runner_up, image_seed(st.seed, sample.name), black, boxes, traits, row)


def perturbation(photo: Photo, st: Settings, m: torch.Tensor, plain: torch.Tensor) -> dict[str, Any]:
    """The columns that perturb the photo along the label's map m (1, S, S); `plain` is the reference map."""
    model, x, black, side = st.bb.model, photo.x, photo.black, photo.x.shape[-1]
    a = torch.tensor([photo.grid[0]], device=x.device)
    b = torch.tensor([photo.runner_up], device=x.device)

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(photo.seed)

    drop, increase = metrics.average_drop(model, x, m, a, black)
    kw = {"steps": st.steps, "batch_size": st.batch_size}
    boxes = photo.boxes
    hit = metrics.pointing_game(m, boxes, metrics.pointing_tolerance(side), gen()) if boxes else None
    cf = metrics.contrastive_faithfulness(model, x, m, plain, a, b, black, seed=photo.seed)
    return {
        "avg_drop": float(drop[0]),
        "increase": int(increase[0]),
        "deletion": float(metrics.deletion(model, x, m, a, black, generator=gen(), **kw)[0]),
        "insertion": float(metrics.insertion(model, x, m, a, generator=gen(), **kw)[0]),
        "pointing": "" if hit is None else int(hit[0]),
        "contrast_drop": float(cf["contrast"][0]),
        "random_drop": float(cf["random"][0]),
        "plain_drop": float(cf["plain"][0]),
    }


Cache = list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]  # (label's map, plain map, perturbation columns)


def shared_perturbation(
    photo: Photo, variant: Variant, maps: torch.Tensor, fns: dict[Variant, MapFn], st: Settings, cache: Cache
) -> dict[str, Any]:
    """`perturbation` of the label's map, computed once for all variants whose maps agree to SHARE_TOLERANCE."""
    m = maps[:1]  # the label's map, (1, S, S)
    if variant.contrast is None:
        plain = m
    else:
        plain = grid_maps(fns[variant.plain], variant.plain, st.bb.model, photo.x, photo.grid, 0)[:1]
    shared = next((r for cm, cp, r in cache if same_maps(m, cm) and same_maps(plain, cp)), None)
    if shared is None:
        shared = perturbation(photo, st, m, plain)
        cache.append((m, plain, shared))
    return shared


def trait_columns(photo: Photo, m: torch.Tensor) -> dict[str, Any]:
    """trait_hit, trait_mass: trait pointing of the label's map m (S, S) on its trait part boxes ("" without boxes).

    trait_area is the share of the input's pixels in those boxes: what a map spread evenly would put there.
    """
    if photo.traits is None:
        return {"trait_hit": "", "trait_mass": "", "trait_area": ""}
    hit, mass = metrics.trait_pointing(m, photo.traits, generator=torch.Generator().manual_seed(photo.seed))
    area = float(metrics.box_mask(photo.traits, *m.shape).float().mean())
    return {"trait_hit": int(hit), "trait_mass": mass, "trait_area": area}


def sanity_columns(photo: Photo, variant: Variant, fn: MapFn, st: Settings) -> dict[str, float]:
    """sanity_1..L: rank correlation of the label's map with the same map on each randomised model (NaN: not run)."""
    values: list[float] = [math.nan] * len(st.randomised)
    if st.randomised and variant.impl in OWN_IMPLS:

        def label_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return grid_maps(fn, variant, model, x, photo.grid, photo.runner_up)[:1]

        values = metrics.sanity_check(label_map, st.bb.model, photo.x, st.randomised)[:, 0].tolist()
    return {f"sanity_{i + 1}": r for i, r in enumerate(values)}


def evaluate_sample(
    sample: Sample,
    pending: Sequence[Variant],
    fns: dict[Variant, MapFn],
    st: Settings,
    on_error: OnError | None = None,
) -> Iterator[dict[str, Any]]:
    """One CSV row per pending variant of the photo (generated one at a time, so each can be saved at once).

    A peer whose maps raise is passed to `on_error` and gets no row. The sanity check is run for our methods
    and the reference maps only (the peers compute the same maps). Variants whose maps agree to SHARE_TOLERANCE
    share the perturbation metrics, which are computed once.
    """
    photo = prepare(sample, st)
    cache: Cache = []
    for variant in pending:
        t0 = time.perf_counter()
        try:
            maps = grid_maps(fns[variant], variant, st.bb.model, photo.x, photo.grid, photo.runner_up)  # (k, S, S)
        except Exception as exc:
            if on_error is None or variant.impl in OWN_IMPLS:
                raise
            on_error(variant, exc)  # a peer's own failure
            continue
        ms = (time.perf_counter() - t0) * 1000
        flat = maps.flatten(1)  # (k, S*S)
        yield {
            **photo.row,
            "impl": variant.impl,
            "method": variant.name,
            "ms": round(ms, 2),
            **shared_perturbation(photo, variant, maps, fns, st, cache),
            "discrimination": float(metrics.class_discrimination(maps.unsqueeze(0))[0]),
            "blank": float(((flat.amax(1) - flat.amin(1)) <= 1e-6).float().mean()),
            **trait_columns(photo, maps[0]),
            **sanity_columns(photo, variant, fns[variant], st),
        }


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows already written to the CSV (empty when there is none)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def progress(total: int, desc: str) -> Any:
    """A tqdm bar on stderr when tqdm is installed, else a plain text bar."""
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="photo", file=sys.stderr)
    except ImportError:
        return _TextBar(total, desc)


class _TextBar:
    def __init__(self, total: int, desc: str) -> None:
        self.total, self.done, self.desc, self.t0 = total, 0, desc, time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        filled = int(30 * self.done / max(self.total, 1))
        elapsed = time.perf_counter() - self.t0
        sys.stderr.write(f"\r{self.desc} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {elapsed:.0f}s")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


Todo = Sequence[tuple[Sample, list[Variant]]]  # photos and the variants they still lack
Runner = Callable[[Todo], Iterator[Iterable[dict[str, Any]]]]
"""Does the per-photo work of a run: yields the rows of each photo of the todo list, photo by photo, any order."""


def evaluate(
    samples: Sequence[Sample],
    fns: dict[Variant, MapFn],
    st: Settings,
    path: Path,
    log: Callable[[str], None],
    runner: Runner | None = None,
) -> list[dict[str, Any]]:
    """Append the rows of the variants not yet in the CSV at `path`, photo by photo; returns all its rows.

    The photos are evaluated in this process (a peer that fails on a photo is noted and skipped for the rest of
    the run), or by `runner` (e.g. Ray actors, `teaching.evaluation.distributed`); either way the rows are saved
    as they come, so a stopped run resumes where it stopped.
    """
    rows = read_rows(path)
    columns = COLUMNS + [f"sanity_{i + 1}" for i in range(len(st.randomised))]
    if rows and list(rows[0]) != columns:
        raise EvaluationError(f"{path} has other columns (written by another version); use another --out")
    done = {(r["image"], r["impl"], r["method"]) for r in rows}
    todo = [(s, [v for v in fns if (s.name, v.impl, v.name) not in done]) for s in samples]
    todo = [(s, pending) for s, pending in todo if pending]
    log(f"{len(samples)} photos, {len(fns)} variants; {len(samples) - len(todo)} photos already done in {path}")
    failed: set[Variant] = set()

    def on_error(variant: Variant, exc: Exception) -> None:
        failed.add(variant)
        log(f"note: {variant.impl} {variant.method} failed ({type(exc).__name__}: {exc}); its rows are skipped")

    def local(todo: Todo) -> Iterator[Iterable[dict[str, Any]]]:
        for sample, pending in todo:
            yield evaluate_sample(sample, [v for v in pending if v not in failed], fns, st, on_error)

    bar = progress(len(todo), "evaluate")
    try:
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            if not rows:
                writer.writeheader()
            for photo_rows in (runner or local)(todo):
                for row in photo_rows:
                    writer.writerow(row)
                    rows.append({k: str(v) for k, v in row.items()})
                f.flush()
                bar.update(1)
    finally:
        bar.close()
    return rows
