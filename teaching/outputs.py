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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
    (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    captions = [f"{n}  {e.probs[i]:.2f}" for i, n in zip(e.classes, e.class_names, strict=True)]
    return GridRow(Path(source).name, cells, captions)


def write_grid(rows: Sequence[GridRow], s: Settings, path: Path) -> None:
    """grid.png: one row per photo, one column per class, captioned "name  probability"."""
    col_labels = [s.backbone.labels[i] for i in s.classes] if s.classes is not None else None
    title = f"{s.method} on {s.backbone.name}, layer {s.layer}"
    if s.contrast == "pair" and s.versus is not None:
        title += f", each class rather than {s.backbone.labels[s.versus]}"
    elif s.contrast == "group":
        title += ", each class rather than the others"
    cells = [r.cells for r in rows]
    grid = make_grid(cells, [r.captions for r in rows], [r.label for r in rows], col_labels, CELL, title)
    stack(grid, colour_bar(grid.width, cmap=s.cmap)).save(path)


INDEX_COLUMNS = ("image", "folder", "top1_index", "top1_name", "top1_prob", "classes", "error")


def index_row(source: str, folder: Path, e: Explanation | None = None, error: str = "") -> dict[str, object]:
    """One line of index.csv: the photo's top-1 prediction and its classes, or the one-line error it failed with."""
    row: dict[str, object] = {"image": source, "folder": str(folder), "error": error}
    if e is not None:
        index, name, prob = e.top(1)[0]
        row.update(top1_index=index, top1_name=name, top1_prob=f"{prob:.6f}")
        row["classes"] = " ".join(str(c) for c in e.classes)
    return row


def write_index(rows: Sequence[dict[str, object]], path: Path) -> None:
    """index.csv: one line per photo given, in the order given, with its prediction or its error."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_grid_row(source: str, folder: Path) -> GridRow:
    """The grid row of a photo whose files are already written (by another process): the same row
    `write_results` returned, read back from result.json and the lossless PNG overlays."""
    result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    cells: list[Image.Image] = []
    captions: list[str] = []
    for entry in result["classes"]:
        with Image.open(folder / entry.get("gradient", entry["overlay"])) as picture:
            cell = picture.convert("RGB")
        cell.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
        cells.append(cell)
        captions.append(f"{entry['name']}  {np.float32(entry['prob']):.2f}")
    return GridRow(Path(source).name, cells, captions)


@contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Turn a file system refusal (read-only folder, full disk, a file in the way) into a TeachingError."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or folder
        raise TeachingError(f"{where}: cannot write the results ({exc.strerror or exc})") from None
