"""The summary of an evaluation: means with seeded 95% bootstrap intervals, a markdown table, one chart per metric.

Each metric is a statistic of some columns of one variant's rows; its interval comes from resampling the photos.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from teaching.labels import imagenet_classes

BOOTSTRAP = 1000  # resamples of the intervals


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


TRAIT_METRICS = [
    Metric("trait_hit", "Trait pointing %", "higher", ("trait_hit",), _mean(100), 1),
    Metric("trait_mass", "Top-20% mass on the part", "higher", ("trait_mass",), _mean()),
    Metric("trait_area", "Part's share of the crop", "lower", ("trait_area",), _mean()),
]


def trait_tables(rows: Sequence[dict[str, Any]], seed: int, n_boot: int = BOOTSTRAP) -> list[str]:
    """Markdown lines: trait pointing per group and per species (ImageNet label) of the group contrasts and the
    reference maps, on the photos with trait part boxes (galleries/traits/); none when no row has them."""
    rows = [r for r in rows if str(r.get("trait_hit", "")) != ""]
    rows = [r for r in rows if r["impl"] == "baseline" or str(r["method"]).endswith("+group")]
    if not rows:
        return []
    names = imagenet_classes()
    text = ["", "## Trait pointing (the label's map on its trait part boxes)"]
    for g in dict.fromkeys(r["group"] for r in rows):
        in_group = [r for r in rows if r["group"] == g]
        text += ["", f"### {g}", "", markdown_table(summarise(in_group, TRAIT_METRICS, seed, n_boot), TRAIT_METRICS)]
        for label in dict.fromkeys(r["label"] for r in in_group):
            of_label = [r for r in in_group if r["label"] == label]
            table = summarise(of_label, TRAIT_METRICS, seed, n_boot)
            text += ["", f"{g} / {names[int(label)]}:", "", markdown_table(table, TRAIT_METRICS)]
    return text


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
    groups = list(dict.fromkeys(r["group"] for r in rows if r["group"]))  # in the order of the photos
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
    text += trait_tables(rows, seed, n_boot)
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
