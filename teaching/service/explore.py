"""The Explore page: one photo, one species group, plain and contrastive maps per species beside the traits.

Top-5 predictions, one plain and one contrastive map per species ("why X rather than the others", Grad-CAM of
y_X - mean of the other species) side by side with the trait sentences, from at most two engine calls on one
preprocessed photo, and a plain sentence when the model's answer should not be trusted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from teaching.api import Explanation, contrast_of, explain, prepare
from teaching.galleries import Group
from teaching.models import DEFAULT_BACKBONE
from teaching.render import SCALE_WORDS, colour_bar, fit_image, make_grid, overlay, stack
from teaching.service.catalog import EXPLORE_METHODS, check_backbone, check_method, contrast_method, label
from teaching.service.groups import get_group
from teaching.service.photos import read_photo
from teaching.service.text import percent
from teaching.service.traits import explore_traits

LOW_CONFIDENCE = 0.5  # below this top-1 probability the explore page says the model is unsure
CELL = 224  # side of one map in the grids, in pixels
TOP_N = 5  # predictions listed


@dataclass
class ExploreResult:
    """What the explore page shows for one photo and one group."""

    grid: Image.Image  # plain maps (row 1) and contrastive maps (row 2), one column per species, traits below
    predictions: list[tuple[int, str, float]]  # the model's top-5 (index, name, probability), over all 1000 classes
    group_probs: dict[str, float]  # species id -> probability
    note: str  # one plain sentence on what the model says
    trusted: bool  # False when the top class is outside the group or its probability is below LOW_CONFIDENCE
    caveat: str  # the group's measured limit of its maps ("" when none), to show beside them
    traits: dict[str, tuple[str, ...]]  # species id -> trait sentences, the one the map points at first (traits.py)
    plain: Explanation = field(repr=False)
    contrast: Explanation = field(repr=False)
    legend: str = SCALE_WORDS  # what the colours mean: each row is drawn on one scale, its strongest panel at 1

    @property
    def labels(self) -> dict[str, float]:
        """The top-5 as {class name: probability}."""
        return {name: p for _, name, p in self.predictions}


def explore_note(group: Group, predictions: Sequence[tuple[int, str, float]]) -> tuple[str, bool]:
    """One sentence on the model's answer, and whether the maps can be trusted to teach."""
    index, name, p = predictions[0]
    if index not in group.class_indices:
        return (
            f"The model does not see any of the {group.title.lower()} here: its best guess is {name} ({percent(p)}). "
            f"The maps show where it would look for each species anyway; do not learn the traits from them.",
            False,
        )
    species = group.species_by_index(index)
    if p < LOW_CONFIDENCE:
        return (
            f"The model is unsure: its best guess, {species.name}, gets only {percent(p)}. "
            f"Read the maps with care and check the traits yourself.",
            False,
        )
    return f"The model says {species.name} ({percent(p)}).", True


def explore(
    image: str | os.PathLike[str] | Image.Image | np.ndarray | None,
    group_id: str,
    method: str = "gradcam",
    backbone: str = DEFAULT_BACKBONE,
) -> ExploreResult:
    """Explain one photo for every species of a group: plain and contrastive maps side by side, with the traits.

    The photo is preprocessed once. One engine call for the plain maps of all k species; the contrastive maps of
    all k ("X rather than the others") come from the same pass for methods linear in the class score (Grad-CAM,
    XGrad-CAM, CAM), else from a second call. A method slow on a CPU (Score-CAM) gets the contrastive Grad-CAM in
    the second row (`catalog.contrast_method`). The maps are shown on the square crop that the model sees; each
    row on one scale (its strongest panel at full colour, weak evidence faint), explained by a colour bar.
    On an annotated photo the named species' traits lead with the one its contrast map points at
    (`traits.explore_traits`); any other photo keeps the usual order.
    """
    group = get_group(group_id)
    check_method(method, EXPLORE_METHODS)
    check_backbone(backbone)
    prepared = prepare(read_photo(image), backbone, decoded=True)
    classes = list(group.class_indices)
    plain = explain(prepared, classes, method=method)
    second = contrast_method(method)
    contrast = contrast_of(plain) or explain(prepared, classes, method=second, contrast="group")
    predictions = plain.top(TOP_N)
    note, trusted = explore_note(group, predictions)
    group_probs = {s.id: float(plain.probs[s.imagenet_index]) for s in group.species}
    top = make_grid(
        [_overlays(plain, CELL)],
        row_labels=[f"{label(method)}: where the model looks for each species"],
        col_labels=[f"{s.name}\n{percent(group_probs[s.id])}" for s in group.species],
        cell_size=CELL,
        title=note,
    )
    traits = explore_traits(group, prepared, contrast, predictions[0][0], trusted)
    captions = []
    for s, raw in zip(group.species, contrast.raw_maps, strict=True):
        empty = [f"Nothing here speaks for {s.name} rather than the others."] if float(raw.max()) <= 0 else []
        captions.append("\n".join(empty + [f"- {t}" for t in traits[s.id]]))
    bottom = make_grid(
        [_overlays(contrast, CELL)],
        captions=[captions],
        row_labels=[f"Contrast ({label(second)}): why this species rather than the others"],
        cell_size=CELL,
    )
    grid = stack(top, bottom, colour_bar(max(top.width, bottom.width)))
    return ExploreResult(grid, predictions, group_probs, note, trusted, group.caveat, traits, plain, contrast)


def _overlays(e: Explanation, side: int) -> list[Image.Image]:
    """One heatmap per class on the crop the model saw (nothing outside it), made at the size shown (the crop
    fitted to `side`), every panel of the row on the row's one scale (`Explanation.shown_crop`)."""
    photo = fit_image(e.image.crop(e.crop_box), side)
    return [overlay(photo, m) for m in e.shown_crop(photo.size)]
