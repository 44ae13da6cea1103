"""The Compare page: one photo, a matrix of methods x backbones, with the sanity-check note on the guided methods.

The photo is preprocessed once per backbone (`teaching.api.prepare`) and that input is explained by every method.
One request is bounded: the lists are checked, de-duplicated and capped before anything runs (an empty list is
refused at once), and the cells stop once COMPARE_BUDGET_S have passed (the rest say so), so a request holds a
worker for at most the budget plus one cell.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from teaching.api import Explanation, Prepared, explain, prepare
from teaching.cams import METHODS
from teaching.errors import MethodError, ModelError, TeachingError, echo
from teaching.models import get_spec, preprocess_image
from teaching.render import fit_image, gradient_image, make_grid, overlay
from teaching.service.catalog import (
    COMPARE_METHODS,
    check_backbone,
    check_method,
    default_compare_backbones,
    default_compare_methods,
    label,
)
from teaching.service.groups import species_names
from teaching.service.photos import read_photo
from teaching.service.text import check_lang, drawn_lang, percent, say

COMPARE_CELL = 160  # side of one map in the methods x backbones matrix
COMPARE_BUDGET_S = 120.0  # no new cell starts after this many seconds of one comparison
MAX_COMPARE_MODELS = 4  # models in one comparison at most (rows)
SANITY_NOTE = say("sanity_note")  # in English; `say("sanity_note", lang)` in the page's language

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is running)


@dataclass
class CompareResult:
    """A matrix of maps: one row per backbone (its top-1 class), one column per method after the photo."""

    grid: Image.Image
    methods: list[str]
    backbones: list[str]
    classes: dict[str, tuple[int, str, float]]  # backbone -> the class explained (its top-1)
    errors: dict[tuple[str, str], str]  # (method, backbone) -> why that cell is empty
    seconds: dict[tuple[str, str], float]  # (method, backbone) -> time of the engine call
    note: str = SANITY_NOTE


def compare(
    image: str | os.PathLike[str] | Image.Image | np.ndarray | None,
    methods: Sequence[str] | None = None,
    backbones: Sequence[str] | None = None,
    progress: Progress | None = None,
    budget_s: float = COMPARE_BUDGET_S,
    lang: str = "en",
) -> CompareResult:
    """Explain the top-1 class of each backbone with each method, on the crop the model sees.

    Args:
        image: the photo.
        methods: keys of COMPARE_METHODS, repeats ignored; None: the default ticks (the fast methods on a CPU);
            an empty list is refused.
        backbones: backbone names (at most MAX_COMPARE_MODELS), repeats ignored; None: the ones with embedded
            weights; an empty list is refused.
        progress: called with (fraction done, what runs next).
        budget_s: no cell starts after this many seconds; the cells left say they were skipped.
        lang: the language of the note, the progress and the matrix's labels ("en" or "zh"); the matrix is drawn
            in English when no font with Chinese glyphs is installed (`text.drawn_lang`). A class of a species
            group gets the group's name for the species, the others ImageNet's (English) name.

    Raises:
        TeachingError: nothing ticked, an unknown or unavailable method or model, too many models, a bad photo.
    """
    methods = _ticked(methods, "method", default_compare_methods)
    backbones = _ticked(backbones, "model", default_compare_backbones)
    for m in methods:
        check_method(m, COMPARE_METHODS)
    if len(backbones) > MAX_COMPARE_MODELS:
        raise ModelError(f"too many models ({len(backbones)}): tick at most {MAX_COMPARE_MODELS}")
    for b in backbones:
        check_backbone(b)
    lang = check_lang(lang)
    drawn = drawn_lang(lang)  # the language of the matrix's text
    photo = read_photo(image)
    start = time.monotonic()
    cells: list[list[Image.Image | None]] = [[None] * (len(methods) + 1) for _ in backbones]
    captions = [[""] * (len(methods) + 1) for _ in backbones]
    classes: dict[str, tuple[int, str, float]] = {}
    errors: dict[tuple[str, str], str] = {}
    seconds: dict[tuple[str, str], float] = {}
    total, done = len(methods) * len(backbones), 0
    for r, backbone in enumerate(backbones):
        prepared: Prepared | None = None
        for c, method in enumerate(methods, start=1):
            if progress:
                progress(done / total, say("runs_on", lang, method=label(method), backbone=backbone))
            if time.monotonic() - start > budget_s:
                errors[method, backbone] = say("skipped", "en", s=f"{budget_s:.0f}")
                captions[r][c] = say("skipped", drawn, s=f"{budget_s:.0f}")
                done += 1
                continue
            target = [classes[backbone][0]] if backbone in classes else None
            t0 = time.perf_counter()
            try:
                # loaded and preprocessed in the first cell of the row: its time includes them, as it always has
                prepared = prepared or prepare(photo, backbone, decoded=True)
                e = explain(prepared, target, method=method, top_k=1)
            except TeachingError as exc:
                errors[method, backbone] = str(exc)
                captions[r][c] = str(exc)
            else:
                seconds[method, backbone] = time.perf_counter() - t0
                classes.setdefault(backbone, e.top(1)[0])
                cells[r][c] = _compare_cell(e)
                captions[r][c] = f"{seconds[method, backbone]:.2f} s"
            done += 1
        cells[r][0] = photo.crop(prepared.crop_box if prepared else _model_crop(photo, backbone))
    if progress:
        progress(1.0, say("done", lang))
    names = species_names(drawn) if drawn != "en" else {}  # English keeps ImageNet's names
    row_labels = []
    for b in backbones:
        top = classes.get(b)
        name = b.replace("_", "_\n")  # a long model name breaks after its underscore, never inside a word
        colon = "：" if drawn == "zh" else ":"
        row_labels.append(f"{name}{colon}\n{names.get(top[0], top[1])} ({percent(top[2])})" if top else name)
    col_labels = [say("model_sees", drawn)] + [
        say("fails_sanity", drawn, method=label(m)) if METHODS[m].fails_sanity else label(m) for m in methods
    ]
    grid = make_grid(cells, captions, row_labels, col_labels, cell_size=COMPARE_CELL)
    return CompareResult(grid, methods, backbones, classes, errors, seconds, say("sanity_note", lang))


def _ticked(values: Sequence[str] | str | None, kind: str, default: Callable[[], list[str]]) -> list[str]:
    """The names ticked, in order and without repeats; None gives `default()`, nothing ticked is refused."""
    if values is None:
        return default()
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, Sequence) or not all(isinstance(v, str) for v in values):
        raise MethodError(f"the {kind}s must be a list of names, not {echo(values)}")
    names = list(dict.fromkeys(values))
    if not names:
        error = MethodError if kind == "method" else ModelError
        raise error(f"tick at least one {kind}")
    return names


def _model_crop(photo: Image.Image, backbone: str) -> tuple[int, int, int, int]:
    """The box of the photo that the backbone sees (its centre crop), for a row whose model could not be loaded."""
    return preprocess_image(photo, get_spec(backbone).preprocess)[1]


def _compare_cell(e: Explanation) -> Image.Image:
    """The picture of one explanation on the crop the model saw: a heatmap, or the gradient image."""
    crop = fit_image(e.image.crop(e.crop_box), COMPARE_CELL)
    if e.attributions is not None:
        return gradient_image(e.attributions[0]).resize(crop.size, Image.Resampling.BILINEAR)
    return overlay(crop, e.shown_crop(crop.size)[0])
