"""The files `python -m teaching explain` writes for each photo, and the grid of all photos.

    overlay_<index>_<name>.png, gradient_<index>_<name>.png (guided methods), maps.npz, result.json per photo;
    grid.png (rows = photos, columns = classes, a colour bar) in the output folder.

The overlays show the crop the model saw (`crop_box` in result.json), with the maps the app draws
(`Explanation.shown_maps`: one scale per photo, its strongest class at 1).

Every front end that writes these files (the local run, a distributed run) calls `write_results` and `write_grid`,
so their outputs are the same files.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from teaching.api import Explanation
from teaching.errors import TeachingError
from teaching.models import Backbone
from teaching.render import colour_bar, gradient_image, make_grid, overlay, stack

TOP_N = 5  # predictions listed in result.json
CELL = 224  # side of one grid cell, in pixels


@dataclass
class Settings:
    """What one explain run applies to every photo, checked once before the first photo."""

    backbone: Backbone
    method: str
    layer: str
    classes: list[int] | None  # None: the top-k classes of each photo
    top: int
    contrast: str | None
    versus: int | None
    cmap: str
    alpha: float
    # the run's language (`python -m teaching explain --lang`); empty: ImageNet's English names and words
    names: dict[int, str] = field(default_factory=dict)  # class index -> name in index.csv, result.json, the output
    grid_names: dict[int, str] = field(default_factory=dict)  # class index -> name drawn in grid.png
    title: str = ""  # the title of grid.png ("": the English one)
    bar: dict[str, Any] = field(default_factory=dict)  # the words of the colour bar (`render.colour_bar`)

    def explain_options(self) -> dict[str, Any]:
        """The keyword arguments of `teaching.api.explain_batch` that these settings fix (every engine's call)."""
        return {
            "classes": self.classes,
            "method": self.method,
            "layer": self.layer,
            "contrast": self.contrast,
            "versus": self.versus,
            "top_k": self.top,
        }


def output_folders(images: Sequence[str], out: Path) -> list[Path]:
    """`out` itself for one photo; else one subfolder per photo, named after the file (made unique)."""
    if len(images) == 1:
        return [out]
    folders: list[Path] = []
    used: set[str] = set()
    for image in images:
        stem = _slug(Path(image).stem) or "image"
        name, n = stem, 1
        while name.lower() in used:
            n += 1
            name = f"{stem}_{n}"
        used.add(name.lower())
        folders.append(out / name)
    return folders


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def class_file(prefix: str, index: int, name: str) -> str:
    """The file name of a per-class image, e.g. overlay_386_African_elephant.png."""
    return f"{prefix}_{index}_{_slug(name)}.png"


@dataclass
class GridRow:
    """One photo's row of grid.png."""

    label: str  # the photo's file name
    cells: list[Image.Image]  # one picture per class, already reduced to the cell size
    captions: list[str]  # "name  probability"


def write_results(e: Explanation, source: str, folder: Path, s: Settings) -> GridRow:
    """Write the overlays (and gradient images), maps.npz and result.json of one photo; return its grid row."""
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, object]] = []
    cells: list[Image.Image] = []
    crop = e.image.crop(e.crop_box)  # what the model saw: nothing outside it is drawn (no cut-off map)
    shown = e.shown_crop()  # the row's one scale
    for j, (index, name) in enumerate(zip(e.classes, e.class_names, strict=True)):
        entry: dict[str, object] = {"index": index, "name": name, "prob": float(e.probs[index])}
        entry["label"] = s.names.get(index, name)  # the name in the run's language
        picture = overlay(crop, shown[j], s.alpha, s.cmap)
        entry["overlay"] = class_file("overlay", index, name)
        picture.save(folder / class_file("overlay", index, name))
        if e.attributions is not None:  # guided methods: the grid shows the pixel attribution
            picture = gradient_image(e.attributions[j])
            entry["gradient"] = class_file("gradient", index, name)
            picture.save(folder / class_file("gradient", index, name))
        picture.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
        cells.append(picture)
        entries.append(entry)
    arrays = {
        "raw_maps": e.raw_maps,
        "maps": e.maps,
        "shown_maps": e.shown_maps,
        "classes": np.asarray(e.classes),
        "probs": e.probs,
    }
    if e.attributions is not None:
        arrays["attributions"] = e.attributions
    np.savez_compressed(folder / "maps.npz", **arrays)  # type: ignore[arg-type]  # the stubs read **kwds as allow_pickle
    bb = s.backbone
    result = {
        "image": source,
        "image_size": list(e.image.size),
        "backbone": e.backbone,
        "weights": str(bb.weights_path) if bb.weights_path else bb.spec.weights,
        "device": str(bb.device),
        "method": e.method,
        "target_layer": e.target_layer,
        "contrast": s.contrast,
        "versus": {"index": s.versus, "name": bb.labels[s.versus]} if s.versus is not None else None,
        "top5": [{"index": i, "name": n, "prob": p} for i, n, p in e.top(TOP_N)],
        "classes": entries,
        "crop_box": list(e.crop_box),
        "timings": {**e.timings, "write": time.perf_counter() - t0},
    }
    (folder / "result.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    names = [s.grid_names.get(i, n) for i, n in zip(e.classes, e.class_names, strict=True)]
    captions = [f"{n}  {e.probs[i]:.2f}" for i, n in zip(e.classes, names, strict=True)]
    return GridRow(Path(source).name, cells, captions)


def write_grid(rows: Sequence[GridRow], s: Settings, path: Path) -> None:
    """grid.png: one row per photo, one column per class, captioned "name  probability"."""
    names = [s.grid_names.get(i, s.backbone.labels[i]) for i in s.classes] if s.classes is not None else None
    title = s.title or f"{s.method} on {s.backbone.name}, layer {s.layer}"
    if not s.title and s.contrast == "pair" and s.versus is not None:
        title += f", each class rather than {s.backbone.labels[s.versus]}"
    elif not s.title and s.contrast == "group":
        title += ", each class rather than the others"
    cells = [r.cells for r in rows]
    grid = make_grid(cells, [r.captions for r in rows], [r.label for r in rows], names, CELL, title)
    stack(grid, colour_bar(grid.width, cmap=s.cmap, **s.bar)).save(path)


INDEX_COLUMNS = ("image", "folder", "top1_index", "top1_name", "top1_prob", "classes", "error")


def index_row(
    source: str, folder: Path, e: Explanation | None = None, error: str = "", names: Mapping[int, str] | None = None
) -> dict[str, object]:
    """One line of index.csv: the photo's top-1 prediction (its name from `names` when there) and its classes, or
    the one-line error it failed with."""
    row: dict[str, object] = {"image": source, "folder": str(folder), "error": error}
    if e is not None:
        index, name, prob = e.top(1)[0]
        row.update(top1_index=index, top1_name=(names or {}).get(index, name), top1_prob=f"{prob:.6f}")
        row["classes"] = " ".join(str(c) for c in e.classes)
    return row


def write_index(rows: Sequence[dict[str, object]], path: Path) -> None:
    """index.csv: one line per photo given, in the order given, with its prediction or its error."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_grid_row(source: str, folder: Path, names: Mapping[int, str] | None = None) -> GridRow:
    """The grid row of a photo whose files are already written (by another process): the same row
    `write_results` returned, read back from result.json and the lossless PNG overlays (`names`: the run's
    `Settings.grid_names`)."""
    result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    cells: list[Image.Image] = []
    captions: list[str] = []
    for entry in result["classes"]:
        with Image.open(folder / entry.get("gradient", entry["overlay"])) as picture:
            cell = picture.convert("RGB")
        cell.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
        cells.append(cell)
        name = (names or {}).get(int(entry["index"]), entry["name"])
        captions.append(f"{name}  {np.float32(entry['prob']):.2f}")
    return GridRow(Path(source).name, cells, captions)


@contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Turn a file system refusal (read-only folder, full disk, a file in the way) into a TeachingError."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or folder
        raise TeachingError(f"{where}: cannot write the results ({exc.strerror or exc})") from None
