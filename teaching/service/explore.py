"""The Explore page: one photo, one species group, plain and contrastive maps per species beside the traits.

Top-5 predictions, one plain and one contrastive map per species ("why X rather than the others", Grad-CAM of
y_X - mean of the other species) side by side with the trait sentences, from at most two engine calls on one
preprocessed photo, and a plain sentence when the model's answer should not be trusted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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
from teaching.service.text import a_name, bar_words, check_lang, drawn_lang, percent, say
from teaching.service.traits import explore_traits, find_lead

LOW_CONFIDENCE = 0.5  # below this top-1 probability the explore page says the model is unsure
CELL = 224  # side of one map in the grids, in pixels
TOP_N = 5  # predictions listed


Progress = Callable[[float, str], None]  # (fraction done, what runs next)


@dataclass
class SpeciesCard:
    """One species of the group as the page shows it: name, probability, its two maps, its traits."""

    species_id: str
    name: str  # the group's name for the species, in the page's language ("Asian elephant", "亚洲象")
    imagenet_name: str  # ImageNet's name of the class ("Indian elephant")
    probability: float
    plain: Image.Image  # where the model looks for this species (the chosen method), on the crop it sees
    contrast: Image.Image  # why this species rather than the others (the contrastive map)
    traits: tuple[str, ...]  # the trait sentences, in the page's language
    empty: str  # "" or the sentence saying that nothing in the photo speaks for this species


@dataclass
class ExploreResult:
    """What the explore page shows for one photo and one group."""

    grid: Image.Image  # plain maps (row 1) and contrastive maps (row 2), one column per species, traits below
    predictions: list[tuple[int, str, float]]  # the model's top-5 (index, name, probability), over all 1000 classes
    group_probs: dict[str, float]  # species id -> probability
    note: str  # one plain sentence on what the model says
    trusted: bool  # False when the top class is outside the group or its probability is below LOW_CONFIDENCE
    caveat: str  # the group's measured limit of its maps ("" when none), to show beside them
    plain: Explanation = field(repr=False)
    contrast: Explanation = field(repr=False)
    cards: list[SpeciesCard] = field(default_factory=list, repr=False)  # one per species, group order
    photo_note: str = ""  # the photo's own label when it is known (a gallery photo), and whether the model agrees
    row_labels: tuple[str, str] = ("", "")  # what the two maps of a card show
    scale: str = ""  # what the colours mean
    names: dict[int, str] = field(default_factory=dict)  # ImageNet index -> the group's name, for the top-5
    traits: dict[str, tuple[str, ...]] = field(default_factory=dict)  # species id -> trait sentences, shown order
    legend: str = SCALE_WORDS  # what the colours mean: each row is drawn on one scale, its strongest panel at 1
    lang: str = "en"  # the language of the sentences, names and traits

    @property
    def labels(self) -> dict[str, float]:
        """The top-5 as {class name: probability}; a species of the group shows its group name first, with
        ImageNet's name in brackets when it differs ("Asian elephant (Indian elephant)")."""
        out = {}
        for index, name, p in self.predictions:
            ours = self.names.get(index)
            out[name if not ours else ours if ours == name else f"{ours} ({name})"] = p
        return out


def explore_note(group: Group, predictions: Sequence[tuple[int, str, float]], lang: str = "en") -> tuple[str, bool]:
    """One sentence on the model's answer, and whether the maps can be trusted to teach."""
    index, name, p = predictions[0]
    if index not in group.class_indices:
        title = group.text("title", lang)
        return say("outside", lang, group=title.lower() if lang == "en" else title, name=name, p=percent(p)), False
    species = group.species_by_index(index)
    if p < LOW_CONFIDENCE:
        return say("unsure", lang, name=species.label(lang), p=percent(p)), False
    return say("says", lang, name=species.label(lang), p=percent(p)), True


def photo_note(
    group: Group, species_id: str | None, predictions: Sequence[tuple[int, str, float]], lang: str = "en"
) -> str:
    """The photo's own species (a gallery photo), and plainly whether the model agrees within the group."""
    if not species_id:
        return ""
    true = group.species_by_id(species_id)
    text = say("photo_is", lang, a_name=a_name(true.label(lang)), name=true.label(lang))
    in_group = [(i, p) for i, _, p in predictions if i in group.class_indices]
    if not in_group or predictions[0][0] not in group.class_indices:
        return text  # the model sees none of the group: explore_note says so
    index, p = in_group[0]
    sep = "" if lang == "zh" else " "  # Chinese sentences follow each other without a space
    if index == true.imagenet_index:
        return text + sep + say("model_right", lang)
    other = group.species_by_index(index).label(lang)
    return text + sep + say("model_wrong", lang, other=other, p=percent(p), name=true.label(lang))


def explore(
    image: str | os.PathLike[str] | Image.Image | np.ndarray | None,
    group_id: str,
    method: str = "gradcam",
    backbone: str = DEFAULT_BACKBONE,
    lang: str = "en",
    species_id: str | None = None,
    progress: Progress | None = None,
) -> ExploreResult:
    """Explain one photo for every species of a group: plain and contrastive maps side by side, with the traits.

    The photo is preprocessed once. One engine call for the plain maps of all k species; the contrastive maps of
    all k ("X rather than the others") come from the same pass for methods linear in the class score (Grad-CAM,
    XGrad-CAM, CAM), else from a second call. A method slow on a CPU (Score-CAM) gets the contrastive Grad-CAM in
    the second row (`catalog.contrast_method`). The maps are shown on the square crop that the model sees; each
    row on one scale (its strongest panel at full colour, weak evidence faint), explained by a colour bar.
    On an annotated photo the named species' traits lead with the one its contrast map points at
    (`traits.find_lead`); any other photo keeps the usual order.

    `lang` ("en" or "zh") is the language of the sentences and names; `species_id` is the photo's own species when
    it is known (a gallery photo), then `photo_note` says whether the model agrees; `progress` is called with
    (fraction done, what runs next) between the steps.
    """
    lang = check_lang(lang)
    group = get_group(group_id)
    check_method(method, EXPLORE_METHODS)
    check_backbone(backbone)
    if species_id:
        group.species_by_id(species_id)
    second = contrast_method(method)
    steps = _Steps(progress, 4)
    steps("read", "photo")
    prepared = prepare(read_photo(image), backbone, decoded=True)
    classes = list(group.class_indices)
    steps("maps", label(method))
    plain = explain(prepared, classes, method=method)
    steps("contrast", label(second))
    contrast = contrast_of(plain) or explain(prepared, classes, method=second, contrast="group")
    steps("draw", "grid")
    predictions = plain.top(TOP_N)
    note, trusted = explore_note(group, predictions, lang)
    group_probs = {s.id: float(plain.probs[s.imagenet_index]) for s in group.species}
    empty = [float(raw.max()) <= 0 for raw in contrast.raw_maps]
    lead = find_lead(group, prepared, contrast, predictions[0][0], trusted)

    def texts(lng: str) -> tuple[tuple[str, str], list[SpeciesCard]]:
        rows = (say("row_plain", lng, method=label(method)), say("row_contrast", lng, method=label(second)))
        traits = explore_traits(group, lead, lng)
        cards = [
            SpeciesCard(
                s.id,
                s.label(lng),
                plain.class_names[i],
                group_probs[s.id],
                plain_maps[i],
                contrast_maps[i],
                traits[s.id],
                say("nothing_for", lng, name=s.label(lng)) if empty[i] else "",
            )
            for i, s in enumerate(group.species)
        ]
        return rows, cards

    plain_maps, contrast_maps = _overlays(plain, CELL), _overlays(contrast, CELL)
    rows, cards = texts(lang)
    # the PNG grid (slides, the CLI) in the page's language, or in English when no font draws Chinese
    drawn = drawn_lang(lang)
    grid_rows, grid_cards = texts(drawn) if drawn != lang else (rows, cards)
    top = make_grid(
        [plain_maps],
        row_labels=[grid_rows[0]],
        col_labels=[f"{c.name}\n{percent(c.probability)}" for c in grid_cards],
        cell_size=CELL,
        title=explore_note(group, predictions, drawn)[0],
    )
    captions = ["\n".join(([c.empty] if c.empty else []) + [f"- {t}" for t in c.traits]) for c in grid_cards]
    bottom = make_grid([contrast_maps], captions=[captions], row_labels=[grid_rows[1]], cell_size=CELL)
    grid = stack(top, bottom, colour_bar(max(top.width, bottom.width), **bar_words(drawn)))
    steps.done()
    return ExploreResult(
        grid,
        predictions,
        group_probs,
        note,
        trusted,
        group.text("caveat", lang),
        plain,
        contrast,
        cards=cards,
        photo_note=photo_note(group, species_id, predictions, lang),
        row_labels=rows,
        scale=say("scale", lang),
        names={s.imagenet_index: s.label(lang) for s in group.species},
        traits={c.species_id: c.traits for c in cards},
        lang=lang,
    )


class _Steps:
    """Reports (fraction done, what runs next) to an optional progress callback, one call per step."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done_steps = progress, total, 0

    def __call__(self, step: str, what: str) -> None:
        if self.progress:
            self.progress(self.done_steps / self.total, f"{step}: {what}")
        self.done_steps += 1

    def done(self) -> None:
        if self.progress:
            self.progress(1.0, "done")


def _overlays(e: Explanation, side: int) -> list[Image.Image]:
    """One heatmap per class on the crop the model saw (nothing outside it), made at the size shown (the crop
    fitted to `side`), every panel of the row on the row's one scale (`Explanation.shown_crop`)."""
    photo = fit_image(e.image.crop(e.crop_box), side)
    return [overlay(photo, m) for m in e.shown_crop(photo.size)]
