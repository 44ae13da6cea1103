"""The evaluation's inputs: labelled photos from a labels CSV, or the look-alike groups of a species folder.

The species groups (group id -> ImageNet indices) are the galleries' own (galleries/*.toml), read through
`teaching.galleries`, so the evaluation measures the groups the app teaches.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teaching.errors import TeachingError
from teaching.galleries import load_groups, species_groups
from teaching.galleries.traits import trait_boxes

GROUP_ORDER = ("elephants", "sharks", "butterflies")  # order of the photos and rows; other groups follow in file order


class EvaluationError(TeachingError):
    """The evaluation's input or output folder cannot be used."""


@dataclass(frozen=True)
class Sample:
    """One labelled photo."""

    name: str  # the key in the rows: the file name as the labels list gives it
    path: Path
    label: int  # ImageNet index (0-based)
    boxes: tuple[tuple[float, float, float, float], ...] = ()  # object boxes in image pixels
    group: str = ""  # species mode: the look-alike group
    classes: tuple[int, ...] = ()  # species mode: the group's classes, the label first
    traits: tuple[tuple[float, float, float, float], ...] = ()  # species mode: the label's trait part boxes (pixels)


def look_alike_groups() -> dict[str, tuple[int, ...]]:
    """The galleries' species groups, group id -> ImageNet indices (group file order), GROUP_ORDER first."""
    groups = species_groups()
    rank = {g: i for i, g in enumerate(GROUP_ORDER)}
    return {g: groups[g] for g in sorted(groups, key=lambda g: rank.get(g, len(rank)))}


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
    """The photos of the look-alike groups in a species folder (SOURCES.tsv), grouped, each group by file name."""
    sources = folder / "SOURCES.tsv"
    if not sources.is_file():
        raise EvaluationError(f"{folder}: no SOURCES.tsv (file, imagenet_index per photo); is it the species folder?")
    box_file = folder / "boxes" / "collected_images_boxes.csv"
    scaled = ("xmin_scaled", "ymin_scaled", "xmax_scaled", "ymax_scaled")  # in the stored file's pixel frame
    table = read_boxes(box_file, scaled) if box_file.is_file() else {}
    groups = look_alike_groups()
    parts: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}  # (photo, label) -> part boxes
    species = {s.id: s.imagenet_index for group in load_groups().values() for s in group.species}
    for g in groups:
        for b in trait_boxes(g):
            parts.setdefault((b.photo, species[b.species_id]), []).append(b.box)
    group_of = {c: (g, classes) for g, classes in groups.items() for c in classes}
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
            traits = tuple(parts.get((row["file"], label), ()))
            sample = Sample(row["file"], folder / row["file"], label, boxes, group, ordered, traits)
            samples.setdefault(row["file"], sample)
    return sorted(samples.values(), key=lambda s: (list(groups).index(s.group), s.name))
