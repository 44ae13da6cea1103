"""`python -m teaching evaluate`: the metrics of `teaching.metrics` for CAM methods on labelled photos.

Two kinds of input:
    --images DIR --labels CSV [--boxes CSV]   labels: file,imagenet_index; boxes: file,xmin,ymin,xmax,ymax (pixels)
    --species DIR                             class folders + SOURCES.tsv (file, imagenet_index); the photos of
                                              the look-alike groups in SPECIES_GROUPS, boxes from
                                              boxes/collected_images_boxes.csv when present

For each photo and each method variant (`gradcam`, `cam`, `gradcam+pair`, `gradcam+group`, ...; with --peers also
pytorch-grad-cam's and TorchCAM's implementations of the same methods, and always two reference maps, `random`
and `centre`), one row of a CSV in OUT: the photo's grid of classes is its label and two other classes (the
model's top predictions, or the rest of its species group), the runner-up B is the grid class the model scores
highest after the label A. The rows are appended photo by photo, and a later run with the same OUT skips the rows
already there. At the end: summary.md (means with seeded 95% bootstrap intervals) and one bar chart per metric.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from teaching import metrics
from teaching.cams import compute_cams, find_layer
from teaching.errors import TeachingError
from teaching.images import load_image
from teaching.maps import minmax, upsample
from teaching.models import BACKBONES, DEFAULT_BACKBONE, Backbone, load_backbone

SPECIES_GROUPS: dict[str, tuple[int, ...]] = {  # the app's look-alike groups (galleries/*.toml), ImageNet indices
    "elephants": (386, 385, 101),
    "sharks": (4, 2, 3),
    "butterflies": (321, 322, 323, 324, 325, 326),
}
DEFAULT_METHODS = "gradcam,gradcampp,xgradcam,layercam,cam,gradcam+pair,gradcam+group"
CONTRASTS = ("pair", "group")
GRID_SIZE = 3  # classes of a grid outside species mode: the label and the two most probable other classes
BASELINES = ("random", "centre")  # reference maps: constant (pixels in random order) and a centred Gaussian
PEERS: dict[str, dict[str, str]] = {  # our method -> the peer's class of the same method
    "pytorch-grad-cam": {
        "gradcam": "GradCAM",
        "gradcampp": "GradCAMPlusPlus",
        "xgradcam": "XGradCAM",
        "layercam": "LayerCAM",
        "scorecam": "ScoreCAM",
    },
    "torchcam": {
        "gradcam": "GradCAM",
        "gradcampp": "GradCAMpp",
        "xgradcam": "XGradCAM",
        "layercam": "LayerCAM",
        "scorecam": "ScoreCAM",
        "smoothgradcampp": "SmoothGradCAMpp",
        "cam": "CAM",
    },
}
PEER_PACKAGES = {"pytorch-grad-cam": ("pytorch_grad_cam", "grad-cam"), "torchcam": ("torchcam", "torchcam")}
BOOTSTRAP = 1000


class EvaluationError(TeachingError):
    """The evaluation's input or output folder cannot be used."""


# --- inputs ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One labelled photo."""

    name: str  # the key in the rows: the file name as the labels list gives it
    path: Path
    label: int  # ImageNet index (0-based)
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # object boxes in image pixels
    group: str = ""  # species mode: the look-alike group
    classes: tuple[int, ...] = ()  # species mode: the group's classes, the label first


def read_boxes(path: Path, columns: Sequence[str] = ("xmin", "ymin", "xmax", "ymax")) -> dict[str, list[Any]]:
    """file -> list of boxes from a CSV with a `file` column and the four box columns."""
    boxes: dict[str, list[Any]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row["file"], []).append(tuple(float(row[c]) for c in columns))
    return boxes


def read_labelled(images: Path, labels: Path, boxes: Path | None = None) -> list[Sample]:
    """The photos of a labels CSV (file,imagenet_index[,...]) with their boxes, in the CSV's order."""
    if not images.is_dir():
        raise EvaluationError(f"{images}: no such folder of images")
    if not labels.is_file():
        raise EvaluationError(f"{labels}: no such labels file (CSV with columns file,imagenet_index)")
    table = read_boxes(boxes) if boxes else {}
    with labels.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"file", "imagenet_index"} <= set(reader.fieldnames or ()):
            raise EvaluationError(f"{labels}: expected the columns file,imagenet_index")
        rows = list(reader)
    return [
        Sample(r["file"], images / r["file"], int(r["imagenet_index"]), tuple(table.get(r["file"], ()))) for r in rows
    ]


def read_species(folder: Path) -> list[Sample]:
    """The photos of the look-alike groups in a species folder (SOURCES.tsv), grouped, in the file's order."""
    sources = folder / "SOURCES.tsv"
    if not sources.is_file():
        raise EvaluationError(f"{folder}: no SOURCES.tsv (file, imagenet_index per photo); is it the species folder?")
    box_file = folder / "boxes" / "collected_images_boxes.csv"
    scaled = ("xmin_scaled", "ymin_scaled", "xmax_scaled", "ymax_scaled")  # in the stored file's pixel frame
    table = read_boxes(box_file, scaled) if box_file.is_file() else {}
    group_of = {c: (g, classes) for g, classes in SPECIES_GROUPS.items() for c in classes}
    samples: dict[str, Sample] = {}
    with sources.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            index = row.get("imagenet_index", "").strip()
            if not index.isdigit() or int(index) not in group_of or not (folder / row["file"]).is_file():
                continue
            label = int(index)
            group, classes = group_of[label]
            ordered = (label, *(c for c in classes if c != label))
            boxes = tuple(table.get(row["file"], ()))
            samples.setdefault(row["file"], Sample(row["file"], folder / row["file"], label, boxes, group, ordered))
    return sorted(samples.values(), key=lambda s: (list(SPECIES_GROUPS).index(s.group), s.name))


# --- method variants and their maps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of making maps: an implementation, a method and an optional contrast."""

    impl: str  # "ours", "pytorch-grad-cam", "torchcam" or "baseline"
    method: str
    contrast: str | None = None  # None, "pair" (A rather than the runner-up B) or "group" (A rather than the rest)

    @property
    def name(self) -> str:
        return f"{self.method}+{self.contrast}" if self.contrast else self.method

    @property
    def plain(self) -> Variant:
        return Variant(self.impl, self.method)


MapFn = Callable[[nn.Module, torch.Tensor, Sequence[int], str | None, int | None], torch.Tensor]
"""(model, x (1, 3, S, S), classes, contrast, versus) -> maps (k, S, S) in [0, 1]."""


def parse_methods(text: str) -> list[tuple[str, str | None]]:
    """ "gradcam,cam+group,contrastive" -> [(method, contrast)]; "contrastive" is an alias of gradcam+group."""
    out: list[tuple[str, str | None]] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        method, _, contrast = item.partition("+")
        if method == "contrastive":
            method, contrast = "gradcam", contrast or "group"
        if contrast and contrast not in CONTRASTS:
            raise EvaluationError(f"{item!r}: the contrast after '+' is 'pair' or 'group'")
        out.append((method, contrast or None))
    if not out:
        raise EvaluationError("--methods names no method")
    return list(dict.fromkeys(out))


def our_maps(method: str, layer: str, classifier: str) -> MapFn:
    """Maps from the engine (`compute_cams`), upsampled to the input and min-max scaled."""

    def maps(
        model: nn.Module, x: torch.Tensor, classes: Sequence[int], contrast: str | None, versus: int | None
    ) -> torch.Tensor:
        linear = dict(model.named_modules())[classifier] if method == "cam" else None
        out = compute_cams(model, x, list(classes), method, layer, contrast, versus, linear)
        return upsample(out.raw, (x.shape[-2], x.shape[-1]))[0]

    return maps


def pytorch_grad_cam_maps(cls_name: str, layer: str) -> MapFn:
    """Maps from pytorch-grad-cam (their post-processing: ReLU, min-max, cv2 bilinear resize, min-max)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pytorch_grad_cam, cls_name)

    def maps(
        model: nn.Module, x: torch.Tensor, classes: Sequence[int], contrast: str | None, versus: int | None
    ) -> torch.Tensor:
        targets = [ClassifierOutputTarget(c) for c in classes]
        with cls(model=model, target_layers=[find_layer(model, layer)]) as cam:
            out = cam(input_tensor=x.repeat(len(classes), 1, 1, 1).requires_grad_(True), targets=targets)
        return torch.from_numpy(out).float().to(x.device)

    return maps


def torchcam_maps(cls_name: str, layer: str, classifier: str) -> MapFn:
    """Maps from TorchCAM (normalised at the layer), upsampled and min-max scaled as ours."""
    from torchcam import methods as tc

    cls = getattr(tc, cls_name)
    kwargs = {"fc_layer": classifier} if cls_name == "CAM" else {}

    def maps(
        model: nn.Module, x: torch.Tensor, classes: Sequence[int], contrast: str | None, versus: int | None
    ) -> torch.Tensor:
        out = []
        with cls(model, target_layer=layer, input_shape=tuple(x.shape[1:]), **kwargs) as extractor:
            for c in classes:
                scores = model(x.detach().clone().requires_grad_(True))
                out.append(extractor(class_idx=int(c), scores=scores)[0].detach())  # (1, h, w)
        return upsample(torch.cat(out).unsqueeze(0), (x.shape[-2], x.shape[-1]))[0]

    return maps


def baseline_maps(kind: str) -> MapFn:
    """Reference maps that ignore the model: all zero ("random": ranks pixels at random) or a centred Gaussian."""

    def maps(
        model: nn.Module, x: torch.Tensor, classes: Sequence[int], contrast: str | None, versus: int | None
    ) -> torch.Tensor:
        h, w = x.shape[-2:]
        if kind == "random":
            return torch.zeros(len(classes), h, w, device=x.device)
        ys = (torch.arange(h, device=x.device) + 0.5 - h / 2) / (h / 4)
        xs = (torch.arange(w, device=x.device) + 0.5 - w / 2) / (w / 4)
        g = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / 2)
        return minmax(g).expand(len(classes), h, w)

    return maps


def build_variants(
    methods: Sequence[tuple[str, str | None]], bb: Backbone, layer: str, peers: bool, log: Callable[[str], None]
) -> dict[Variant, MapFn]:
    """The variants to run and their map functions; peers only for their plain methods, when installed."""
    spec = bb.spec
    out: dict[Variant, MapFn] = {}
    for method, contrast in methods:
        if method == "cam" and not spec.gap_linear:
            raise EvaluationError(f"the closed-form CAM needs a global-average-pool + linear head; {bb.name} has none")
        out[Variant("ours", method, contrast)] = our_maps(method, layer, spec.classifier)
        if contrast:  # the plain map of the same method is the reference of the contrastive test
            out.setdefault(Variant("ours", method), our_maps(method, layer, spec.classifier))
    if peers:
        plain = [m for m, c in methods if c is None]
        for impl, table in PEERS.items():
            module, dist = PEER_PACKAGES[impl]
            try:
                __import__(module)
            except ImportError:
                log(f"note: {impl} is not installed (pip install {dist}; a test-only dependency): its rows are skipped")
                continue
            for method in plain:
                if method not in table:
                    continue
                if impl == "torchcam":
                    out[Variant(impl, method)] = torchcam_maps(table[method], layer, spec.classifier)
                else:
                    out[Variant(impl, method)] = pytorch_grad_cam_maps(table[method], layer)
    for kind in BASELINES:
        out[Variant("baseline", kind)] = baseline_maps(kind)
    return out


# --- one photo ---------------------------------------------------------------------------------------------------


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
]


@dataclass
class Settings:
    """What every photo is evaluated with."""

    bb: Backbone
    steps: int
    seed: int
    batch_size: int
    randomised: list[nn.Module]  # cascading randomisation of the model (sanity check)


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


def image_seed(seed: int, name: str) -> int:
    """A per-photo seed that does not depend on the order of the run (so a resumed run gives the same numbers)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


SHARE_TOLERANCE = 1e-4  # maps that differ by at most this everywhere share their perturbation results


def same_maps(a: torch.Tensor, b: torch.Tensor, tol: float = SHARE_TOLERANCE) -> bool:
    """True when two maps differ by at most `tol` at every pixel (e.g. Grad-CAM and the closed-form CAM)."""
    return a.shape == b.shape and bool((a - b).abs().max() <= tol)


def evaluate_sample(
    sample: Sample,
    pending: Sequence[Variant],
    fns: dict[Variant, MapFn],
    st: Settings,
    on_error: Callable[[Variant, Exception], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """One CSV row per pending variant of the photo (generated one at a time, so each can be saved at once).

    A peer whose maps raise is passed to `on_error` and gets no row. The sanity check is run for our methods
    and the reference maps only (the peers compute the same maps). Variants whose maps agree to SHARE_TOLERANCE
    share the perturbation metrics, which are computed once.
    """
    bb, model = st.bb, st.bb.model
    image = load_image(sample.path)
    x, crop = bb.preprocess(image)
    side = x.shape[-1]
    with torch.no_grad():
        logits = model(x)[0].float()
    probs = torch.softmax(logits, 0)
    label = sample.label
    if sample.classes:
        grid = list(sample.classes)
    else:
        grid = [label] + [c for c in logits.argsort(descending=True).tolist() if c != label][: GRID_SIZE - 1]
    runner_up = max(grid[1:], key=lambda c: float(logits[c]))
    seed = image_seed(st.seed, sample.name)
    pre = bb.spec.preprocess
    black = metrics.black_like(x, pre.mean, pre.std)
    a_t = torch.tensor([label], device=x.device)
    b_t = torch.tensor([runner_up], device=x.device)
    boxes = [metrics.boxes_to_crop(torch.tensor(sample.boxes), crop, side).to(x.device)] if sample.boxes else None
    base = {
        "image": sample.name,
        "group": sample.group,
        "label": label,
        "pred": int(logits.argmax()),
        "prob": float(probs[label]),
        "runner_up": runner_up,
        "margin": float(logits[label] - logits[runner_up]),
    }

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    def perturbation(m: torch.Tensor, plain: torch.Tensor) -> dict[str, Any]:
        drop, increase = metrics.average_drop(model, x, m, a_t, black)
        kw = {"steps": st.steps, "batch_size": st.batch_size}
        hit = metrics.pointing_game(m, boxes, metrics.pointing_tolerance(side), gen()) if boxes else None
        cf = metrics.contrastive_faithfulness(model, x, m, plain, a_t, b_t, black, seed=seed)
        return {
            "avg_drop": float(drop[0]),
            "increase": int(increase[0]),
            "deletion": float(metrics.deletion(model, x, m, a_t, black, generator=gen(), **kw)[0]),
            "insertion": float(metrics.insertion(model, x, m, a_t, generator=gen(), **kw)[0]),
            "pointing": "" if hit is None else int(hit[0]),
            "contrast_drop": float(cf["contrast"][0]),
            "random_drop": float(cf["random"][0]),
            "plain_drop": float(cf["plain"][0]),
        }

    cache: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]] = []
    for variant in pending:
        fn = fns[variant]
        t0 = time.perf_counter()
        try:
            maps = grid_maps(fn, variant, model, x, grid, runner_up)  # (k, S, S)
        except Exception as exc:
            if on_error is None or variant.impl in ("ours", "baseline"):
                raise
            on_error(variant, exc)  # a peer's own failure
            continue
        ms = (time.perf_counter() - t0) * 1000
        m = maps[:1]  # the label's map, (1, S, S)
        plain = m if variant.contrast is None else grid_maps(fns[variant.plain], variant.plain, model, x, grid, 0)[:1]
        shared = next((r for cm, cp, r in cache if same_maps(m, cm) and same_maps(plain, cp)), None)
        if shared is None:
            shared = perturbation(m, plain)
            cache.append((m, plain, shared))
        flat = maps.flatten(1)
        sanity: list[float] = [math.nan] * len(st.randomised)
        if st.randomised and variant.impl in ("ours", "baseline"):

            def label_map(mdl: nn.Module, inp: torch.Tensor, v: Variant = variant, f: MapFn = fn) -> torch.Tensor:
                return grid_maps(f, v, mdl, inp, grid, runner_up)[:1]

            sanity = metrics.sanity_check(label_map, model, x, st.randomised)[:, 0].tolist()
        yield {
            **base,
            "impl": variant.impl,
            "method": variant.name,
            "ms": round(ms, 2),
            **shared,
            "discrimination": float(metrics.class_discrimination(maps.unsqueeze(0))[0]),
            "blank": float(((flat.amax(1) - flat.amin(1)) <= 1e-6).float().mean()),
            **{f"sanity_{i + 1}": r for i, r in enumerate(sanity)},
        }


# --- summary -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One number of the summary, computed from the rows of one variant."""

    key: str  # file name of its figure
    title: str
    better: str  # "lower" or "higher"
    columns: tuple[str, ...]  # the row columns it needs (rows missing one are left out)
    stat: Callable[[np.ndarray], float]  # (n, len(columns)) -> the number; bootstrapped over the rows
    digits: int = 3


def _mean(scale: float = 1.0) -> Callable[[np.ndarray], float]:
    return lambda a: float(a[:, 0].mean() * scale)


def _ratio(a: np.ndarray) -> float:
    den = a[:, 1].mean()
    return float(a[:, 0].mean() / den) if den != 0 else math.nan


def _diff(a: np.ndarray) -> float:
    return float((a[:, 0] - a[:, 1]).mean())


def summary_metrics(levels: int) -> list[Metric]:
    """The summary's metrics; the sanity check is reported at the deepest randomisation level."""
    sanity = [Metric("sanity", f"Sanity rank corr. ({levels} units random)", "lower", (f"sanity_{levels}",), _mean())]
    return [
        Metric("avg_drop", "Average Drop %", "lower", ("avg_drop",), _mean(), 1),
        Metric("increase", "Increase in Confidence %", "higher", ("increase",), _mean(100), 1),
        Metric("deletion", "Deletion AUC", "lower", ("deletion",), _mean()),
        Metric("insertion", "Insertion AUC", "higher", ("insertion",), _mean()),
        Metric("pointing", "Pointing game %", "higher", ("pointing",), _mean(100), 1),
        Metric("discrimination", "Grid class correlation r", "lower", ("discrimination",), _mean()),
        Metric("contrast_drop", "Margin drop, top 20% of the map", "higher", ("contrast_drop",), _mean(), 2),
        Metric("vs_random", "Margin drop minus random 20%'s", "higher", ("contrast_drop", "random_drop"), _diff, 2),
        Metric("ratio", "Margin drop / random 20%'s", "higher", ("contrast_drop", "random_drop"), _ratio, 2),
        Metric("vs_plain", "Margin drop minus plain map's", "higher", ("contrast_drop", "plain_drop"), _diff, 2),
        *(sanity if levels > 0 else []),
        Metric("ms", "Maps ms per photo", "lower", ("ms",), _mean(), 0),
    ]


def metric_values(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> np.ndarray:
    """(n, len(columns)) floats from the rows that have a finite value in every column."""
    out = []
    for r in rows:
        try:
            values = [float(r[c]) for c in columns]
        except (KeyError, ValueError, TypeError):
            continue
        if all(math.isfinite(v) for v in values):
            out.append(values)
    return np.array(out, dtype=np.float64).reshape(-1, len(columns))


def bootstrap(
    values: np.ndarray, stat: Callable[[np.ndarray], float], n: int = BOOTSTRAP, seed: int = 0
) -> tuple[float, float, float]:
    """(statistic, 2.5th, 97.5th percentile) of the statistic over `n` seeded resamples of the rows."""
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = [stat(values[rng.integers(0, len(values), len(values))]) for _ in range(n)]
    lo, hi = np.nanpercentile(draws, [2.5, 97.5]) if np.isfinite(draws).any() else (math.nan, math.nan)
    return stat(values), float(lo), float(hi)


@dataclass
class Cell:
    """One summarised number."""

    value: float
    lo: float
    hi: float
    n: int

    def text(self, digits: int) -> str:
        if self.n == 0 or not math.isfinite(self.value):
            return "-"
        if not math.isfinite(self.lo):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def summarise(
    rows: Sequence[dict[str, Any]], metric_list: Sequence[Metric], seed: int = 0, n_boot: int = BOOTSTRAP
) -> dict[tuple[str, str], dict[str, Cell]]:
    """(impl, method) -> metric key -> Cell, in the order the rows first name each variant."""
    by_variant: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_variant.setdefault((r["impl"], r["method"]), []).append(r)
    out: dict[tuple[str, str], dict[str, Cell]] = {}
    for key, group in by_variant.items():
        out[key] = {}
        for m in metric_list:
            values = metric_values(group, m.columns)
            out[key][m.key] = Cell(*bootstrap(values, m.stat, n_boot, seed), n=len(values))
    return out


def markdown_table(table: dict[tuple[str, str], dict[str, Cell]], metric_list: Sequence[Metric]) -> str:
    """A markdown table: one row per variant, one column per metric (mean [95% CI]); empty ones left out."""
    arrows = {"lower": "↓", "higher": "↑"}
    metric_list = [m for m in metric_list if any(cells[m.key].n for cells in table.values())]
    head = ["impl", "method", "n"] + [f"{m.title} {arrows[m.better]}" for m in metric_list]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for (impl, method), cells in table.items():
        n = max((c.n for c in cells.values()), default=0)
        if n == 0:
            continue
        values = [cells[m.key].text(m.digits) for m in metric_list]
        lines.append("| " + " | ".join([impl, method, str(n), *values]) + " |")
    return "\n".join(lines)


def bar_chart(title: str, better: str, bars: Sequence[tuple[str, Cell]], digits: int) -> Image.Image:
    """A horizontal bar chart with 95% interval whiskers, drawn with PIL."""
    font = ImageFont.load_default(size=13)
    bars = [(label, c) for label, c in bars if c.n > 0 and math.isfinite(c.value)]
    label_w, plot_w, row_h, top = 230, 360, 22, 40
    img = Image.new("RGB", (label_w + plot_w + 90, top + row_h * max(len(bars), 1) + 28), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), f"{title} ({better} is better), mean and 95% bootstrap interval", fill="black", font=font)
    ends = [v for _, c in bars for v in (c.value, c.lo, c.hi) if math.isfinite(v)] + [0.0]
    lo, hi = min(ends), max(ends)
    span = (hi - lo) or 1.0

    def px(v: float) -> float:
        return label_w + (v - lo) / span * plot_w

    colours = {"ours": (46, 117, 182), "pytorch-grad-cam": (230, 145, 56), "torchcam": (106, 168, 79)}
    for i, (label, c) in enumerate(bars):
        y = top + i * row_h
        draw.text((10, y + 3), label, fill="black", font=font)
        x0, x1 = sorted((px(0.0), px(c.value)))
        draw.rectangle((x0, y + 4, max(x1, x0 + 1), y + row_h - 4), fill=colours.get(label.split("/")[0], (150,) * 3))
        if math.isfinite(c.lo):
            yc = y + row_h / 2
            draw.line((px(c.lo), yc, px(c.hi), yc), fill="black", width=2)
            for v in (c.lo, c.hi):
                draw.line((px(v), yc - 5, px(v), yc + 5), fill="black", width=2)
        draw.text((label_w + plot_w + 8, y + 3), f"{c.value:.{digits}f}", fill="black", font=font)
    draw.line((px(0.0), top - 4, px(0.0), top + row_h * len(bars)), fill=(120,) * 3)
    return img


def write_summary(
    out: Path, rows: Sequence[dict[str, Any]], config: dict[str, Any], seed: int, n_boot: int = BOOTSTRAP
) -> str:
    """summary.md and figures/<metric>.png in `out`; returns the markdown."""
    metric_list = summary_metrics(int(config["sanity_levels"]))
    table = summarise(rows, metric_list, seed, n_boot)
    text = [
        f"# Evaluation: {config['dataset']}",
        "",
        f"backbone {config['backbone']}, layer {config['layer']}, {config['images']} photos, "
        f"{config['steps']} deletion/insertion steps, seed {seed}; mean [95% bootstrap interval, {n_boot} resamples]",
        f"sanity levels (cumulative, from the top): {', '.join(config['sanity_units'])}",
        "",
        markdown_table(table, metric_list),
    ]
    groups = sorted({r["group"] for r in rows if r["group"]}, key=lambda g: list(SPECIES_GROUPS).index(g))
    key_metrics = [
        m for m in metric_list if m.key in ("discrimination", "contrast_drop", "vs_random", "ratio", "vs_plain")
    ]
    for g in groups:
        text += [
            "",
            f"## {g}",
            "",
            markdown_table(summarise([r for r in rows if r["group"] == g], key_metrics, seed, n_boot), key_metrics),
        ]
    level_metrics = [
        Metric(f"sanity_{i}", f"after {config['sanity_units'][i - 1]}", "lower", (f"sanity_{i}",), _mean())
        for i in range(1, int(config["sanity_levels"]) + 1)
    ]
    if level_metrics:
        text += [
            "",
            "## Sanity check by randomisation level",
            "",
            markdown_table(summarise(rows, level_metrics, seed, n_boot), level_metrics),
        ]
    markdown = "\n".join(text) + "\n"
    (out / "summary.md").write_text(markdown)
    (out / "figures").mkdir(exist_ok=True)
    for m in metric_list:
        bars = [(f"{impl}/{method}", cells[m.key]) for (impl, method), cells in table.items() if cells[m.key].n]
        if not bars:
            continue
        chart = bar_chart(m.title, m.better, bars, m.digits).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        chart.save(out / "figures" / f"{m.key}.png", optimize=True)
    return markdown


# --- the run -----------------------------------------------------------------------------------------------------


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


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m teaching evaluate`."""
    p = argparse.ArgumentParser(
        prog="python -m teaching evaluate",
        description="Faithfulness, localisation and teaching metrics of CAM methods on labelled photos.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of photos named in --labels")
    src.add_argument("--species", type=Path, help="species folder: class folders and SOURCES.tsv")
    p.add_argument("--labels", type=Path, help="CSV file,imagenet_index (with --images)")
    p.add_argument("--boxes", type=Path, help="CSV file,xmin,ymin,xmax,ymax in image pixels (pointing game)")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=list(BACKBONES))
    p.add_argument("--layer", default="", help="target layer (default: the backbone's)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma list; '+pair' / '+group' add a contrast")
    p.add_argument("--peers", action="store_true", help="also pytorch-grad-cam and TorchCAM (test-only deps)")
    p.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    p.add_argument("--out", type=Path, required=True, help="output folder (rows.csv, summary.md, figures/)")
    p.add_argument("--batch-size", type=int, default=metrics.FORWARD_BATCH, help="inputs per forward pass")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch during the run (0: torch's default; 1 is faster on a busy machine)",
    )
    p.add_argument("--steps", type=int, default=metrics.DELETION_STEPS, help="deletion/insertion steps")
    p.add_argument("--sanity-levels", type=int, default=4, help="units randomised, cumulative from the top")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help="bootstrap resamples of the intervals")
    return p


def check_config(out: Path, config: dict[str, Any]) -> None:
    """Write config.json, or check that a resumed run uses the same settings."""
    path = out / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in config if k != "images" and old.get(k) != config[k]]
        if changed:
            raise EvaluationError(
                f"{out} holds a run with other settings ({', '.join(changed)}); use another --out or the same settings"
            )
    path.write_text(json.dumps(config, indent=2) + "\n")


def run(args: argparse.Namespace, log: Callable[[str], None]) -> str:
    """Evaluate, append the new rows, summarise; returns the summary markdown."""
    if args.images is not None:
        if args.labels is None:
            raise EvaluationError("--images needs --labels (CSV file,imagenet_index)")
        samples = read_labelled(args.images, args.labels, args.boxes)
        dataset = str(args.images)
    else:
        samples = read_species(args.species)
        dataset = f"{args.species} (species groups)"
    if args.limit > 0:
        samples = samples[: args.limit]
    if not samples:
        raise EvaluationError("no photos to evaluate")
    torch.manual_seed(args.seed)
    bb = load_backbone(args.backbone, device=args.device)
    layer = args.layer or bb.spec.target_layer
    find_layer(bb.model, layer)
    fns = build_variants(parse_methods(args.methods), bb, layer, args.peers, log)
    randomised = metrics.cascading_randomisation(bb.model, args.sanity_levels, args.seed)
    config = {
        "dataset": dataset,
        "backbone": bb.name,
        "layer": layer,
        "steps": args.steps,
        "seed": args.seed,
        "sanity_levels": len(randomised),
        "sanity_units": [units[-1] for units, _ in randomised],
        "images": len(samples),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    check_config(args.out, config)
    path = args.out / "rows.csv"
    rows = read_rows(path)
    done = {(r["image"], r["impl"], r["method"]) for r in rows}
    columns = COLUMNS + [f"sanity_{i + 1}" for i in range(len(randomised))]
    settings = Settings(bb, args.steps, args.seed, args.batch_size, [m for _, m in randomised])
    todo = [(s, [v for v in fns if (s.name, v.impl, v.name) not in done]) for s in samples]
    todo = [(s, pending) for s, pending in todo if pending]
    log(f"{len(samples)} photos, {len(fns)} variants; {len(samples) - len(todo)} photos already done in {path}")
    failed: set[Variant] = set()

    def on_error(variant: Variant, exc: Exception) -> None:
        failed.add(variant)
        log(f"note: {variant.impl} {variant.method} failed ({type(exc).__name__}: {exc}); its rows are skipped")

    bar = progress(len(todo), "evaluate")
    try:
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            if not rows:
                writer.writeheader()
            for sample, pending in todo:
                for row in evaluate_sample(sample, [v for v in pending if v not in failed], fns, settings, on_error):
                    writer.writerow(row)
                    rows.append({k: str(v) for k, v in row.items()})
                f.flush()
                bar.update(1)
    finally:
        bar.close()
    markdown = write_summary(args.out, rows, config, args.seed, args.bootstrap)
    log(f"wrote {path}, {args.out / 'summary.md'} and {args.out / 'figures'}/")
    return markdown


def main(argv: list[str] | None = None) -> int:
    """`python -m teaching evaluate ...`; returns the exit status (2 on a user error)."""
    args = parser().parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        print(run(args, log))
    except TeachingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
