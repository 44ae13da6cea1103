"""What the app (and any other front end) calls: validate the input, run the engine, return results ready to show.

Nothing here imports Gradio. Every function takes plain values (a photo path or image, a group id, method and
backbone names, a quiz state dict) and returns a dataclass of images, numbers and sentences. Errors meant for the
user are `TeachingError`s with a one-line message; the caller shows the message as it is.

- `explore`: one photo, one species group: top-5 predictions, one plain and one contrastive map per species
  ("why X rather than the others", Grad-CAM of y_X - mean of the other species) side by side with the trait
  sentences, from two engine calls, and a plain sentence when the model's answer should not be trusted.
- `compare`: one photo, a matrix of methods x backbones, with the sanity-check note on the guided methods.
- `start_quiz`, `quiz_answer`, `quiz_next`: the teaching protocol of `teaching.quiz`, turned into what a page
  shows (photo, choices, feedback with the contrastive map and the traits, the final score against chance).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from teaching import cams
from teaching.api import Explanation, contrast_of, explain
from teaching.errors import ImageError, MethodError, TeachingError
from teaching.galleries import (
    GalleryError,
    Group,
    default_cache_dir,
    download_gallery,
    gallery_photos,
    load_groups,
)
from teaching.images import load_image
from teaching.models import (
    BACKBONES,
    DEFAULT_BACKBONE,
    OFFLINE_BACKBONES,
    get_spec,
    load_backbone,
    preprocess_image,
)
from teaching.quiz import Feedback, QuizConfig, QuizError, QuizState, answer, can_advance, current_question, new_quiz
from teaching.quiz import advance as quiz_advance
from teaching.quiz import score as quiz_score
from teaching.render import darken_outside, fit_image, gradient_image, make_grid, overlay, to_png_bytes

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # largest photo file accepted (the app also gives it to launch(max_file_size))
JPEG_QUALITY = 90  # the grids as shown in the page (the download stays PNG)
LOW_CONFIDENCE = 0.5  # below this top-1 probability the explore page says the model is unsure
CELL = 224  # side of one map in the grids, in pixels
COMPARE_CELL = 160  # side of one map in the methods x backbones matrix
TOP_N = 5  # predictions listed
DEFAULT_GROUP = "elephants"  # the group a page starts with (the first group when it does not exist)

METHOD_LABELS: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "smoothgradcampp": "Smooth Grad-CAM++",
    "scorecam": "Score-CAM",
    "layercam": "LayerCAM",
    "xgradcam": "XGrad-CAM",
    "cam": "CAM",
    "guided_backprop": "Guided Backprop",
    "guided_gradcam": "Guided Grad-CAM",
    "occlusion": "Occlusion",
    "contrastive": "Grad-CAM",
}
EXPLORE_METHODS = ("gradcam", "gradcampp", "smoothgradcampp", "scorecam", "layercam", "xgradcam", "cam")
COMPARE_METHODS = (
    "gradcam",
    "gradcampp",
    "smoothgradcampp",
    "scorecam",
    "layercam",
    "guided_backprop",
    "guided_gradcam",
    "occlusion",
)
GUIDED_METHODS = ("guided_backprop", "guided_gradcam")
SLOW_ON_CPU = ("scorecam", "occlusion")  # hundreds of forward passes: a minute or more on a small CPU
# Methods whose contrastive map costs no more than their plain map; Score-CAM's would double a long computation,
# so its second row is the contrastive Grad-CAM.
CONTRAST_METHODS = ("gradcam", "gradcampp", "smoothgradcampp", "layercam", "xgradcam", "cam")
SANITY_NOTE = (
    "Guided Backprop and Guided Grad-CAM fail the model-randomisation sanity check (Adebayo et al., NeurIPS 2018): "
    "their pictures hardly change when the model's last layers are replaced by random weights, so they show the "
    "edges of the photo more than what the model uses. Do not learn species traits from them."
)

Progress = Callable[[float, str], None]  # (fraction done in [0, 1], what is running)


# --- inputs ----------------------------------------------------------------------------------------------------


def read_photo(src: str | os.PathLike[str] | Image.Image | np.ndarray | None, name: str | None = None) -> Image.Image:
    """A photo from a path (an upload), an image or an array, checked: file size, format, pixel count.

    Raises:
        ImageError: no photo, a file over MAX_UPLOAD_BYTES, or anything `load_image` refuses.
    """
    if src is None or (isinstance(src, str) and not src):
        raise ImageError("no photo: upload one or pick one from the gallery")
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        label = name or path.name
        if path.is_file() and path.stat().st_size > MAX_UPLOAD_BYTES:
            size_mb = path.stat().st_size / 1_048_576
            raise ImageError(f"{label}: file too large ({size_mb:.1f} MB, the limit is {MAX_UPLOAD_BYTES >> 20} MB)")
        return load_image(path, name=label)
    return load_image(src, name=name)


@lru_cache(maxsize=1)
def groups() -> dict[str, Group]:
    """The species groups of the repository's galleries/, read once per process."""
    return load_groups()


def get_group(group_id: str) -> Group:
    """The group called `group_id`, or a GalleryError naming the known ones."""
    known = groups()
    if group_id not in known:
        raise GalleryError(f"unknown species group {group_id!r}; choose one of {', '.join(known)}")
    return known[group_id]


def warm_up() -> None:
    """Load the default backbone and the groups now, so that the first request does not wait for them."""
    load_backbone(DEFAULT_BACKBONE)
    groups()


def group_choices() -> list[tuple[str, str]]:
    """(title, id) of every group, for a dropdown."""
    return [(g.title, g.id) for g in groups().values()]


def default_group() -> str:
    """The id of the group a page starts with."""
    return DEFAULT_GROUP if DEFAULT_GROUP in groups() else next(iter(groups()))


def available_methods(names: Sequence[str]) -> list[str]:
    """The methods of `names` that the engine knows in this installation, in the given order."""
    return [m for m in names if m in cams.METHODS]


def weights_available(name: str) -> bool:
    """True when backbone `name` can be loaded without a download: embedded weights, or already cached."""
    return get_spec(name).cached()


def available_backbones() -> list[str]:
    """The backbones usable now: the offline ones always, the others when their weights are cached."""
    return list(OFFLINE_BACKBONES) + [n for n in BACKBONES if n not in OFFLINE_BACKBONES and weights_available(n)]


def method_choices(names: Sequence[str]) -> list[tuple[str, str]]:
    """(label, key) of the available methods of `names`; without a GPU the slow ones say so."""
    slow = " (slow without a GPU)" if not torch.cuda.is_available() else ""
    return [(METHOD_LABELS[m] + (slow if m in SLOW_ON_CPU else ""), m) for m in available_methods(names)]


def default_compare_methods() -> list[str]:
    """The methods a comparison starts with: all of them on a GPU, the fast ones on a CPU."""
    methods = available_methods(COMPARE_METHODS)
    return methods if torch.cuda.is_available() else [m for m in methods if m not in SLOW_ON_CPU]


def _check_method(method: str, allowed: Sequence[str]) -> None:
    if method not in allowed or method not in cams.METHODS:
        choices = ", ".join(available_methods(allowed))
        raise MethodError(f"unknown method {method!r}; choose one of {choices}")


def _check_backbone(backbone: str) -> None:
    get_spec(backbone)
    if not weights_available(backbone):
        raise TeachingError(
            f"the weights of {backbone} are not on this machine and the app does not download them; "
            f"choose one of {', '.join(available_backbones())}"
        )


def _pct(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else "<0.1%"


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def save_png(image: Image.Image, prefix: str = "grid") -> Path:
    """Write the image as PNG (for download) into this process's temp folder and return the path."""
    return _save(to_png_bytes(image, compress_level=1), prefix, "png")  # level 1: twice as fast as 6, larger


def save_jpeg(image: Image.Image, prefix: str = "grid") -> Path:
    """Write the image as JPEG (for display: 15x faster to encode than PNG and a third of the bytes to send)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return _save(buf.getvalue(), prefix, "jpg")


_last_cleanup = [0.0]
_cleanup_lock = threading.Lock()


def _save(data: bytes, prefix: str, suffix: str) -> Path:
    """Write bytes to the temp folder under a name made from their hash; remove files older than an hour.

    The folder is swept at most once a minute, so a busy server does not list it on every request.
    """
    folder = Path(tempfile.gettempdir()) / "teaching-app"
    folder.mkdir(exist_ok=True)
    path = folder / f"{prefix}-{hashlib.sha256(data).hexdigest()[:16]}.{suffix}"
    if not path.exists():
        path.write_bytes(data)
    now = time.time()
    with _cleanup_lock:
        sweep = now - _last_cleanup[0] > 60
        if sweep:
            _last_cleanup[0] = now
    if sweep:
        for old in folder.iterdir():
            try:
                if old != path and old.stat().st_mtime < now - 3600:
                    old.unlink(missing_ok=True)
            except OSError:  # removed by another thread meanwhile
                continue
    return path


# --- explore ---------------------------------------------------------------------------------------------------


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

    @property
    def labels(self) -> dict[str, float]:
        """The top-5 as {class name: probability}."""
        return {name: p for _, name, p in self.predictions}


def explore_note(group: Group, predictions: Sequence[tuple[int, str, float]]) -> tuple[str, bool]:
    """One sentence on the model's answer, and whether the maps can be trusted to teach."""
    index, name, p = predictions[0]
    if index not in group.class_indices:
        return (
            f"The model does not see any of the {group.title.lower()} here: its best guess is {name} ({_pct(p)}). "
            f"The maps show where it would look for each species anyway; do not learn the traits from them.",
            False,
        )
    species = group.species_by_index(index)
    if p < LOW_CONFIDENCE:
        return (
            f"The model is unsure: its best guess, {species.name}, gets only {_pct(p)}. "
            f"Read the maps with care and check the traits yourself.",
            False,
        )
    return f"The model says {species.name} ({_pct(p)}).", True


def explore(
    image: str | os.PathLike[str] | Image.Image | np.ndarray | None,
    group_id: str,
    method: str = "gradcam",
    backbone: str = DEFAULT_BACKBONE,
) -> ExploreResult:
    """Explain one photo for every species of a group: plain and contrastive maps side by side, with the traits.

    One engine call for the plain maps of all k species; the contrastive maps of all k ("X rather than the
    others") come from the same pass for methods linear in the class score (Grad-CAM, XGrad-CAM, CAM), else from a
    second call. Methods outside CONTRAST_METHODS get the contrastive Grad-CAM in the second row. The maps are
    shown on the square crop that the model sees.
    """
    group = get_group(group_id)
    _check_method(method, EXPLORE_METHODS)
    _check_backbone(backbone)
    photo = read_photo(image)
    classes = list(group.class_indices)
    plain = explain(photo, classes, method=method, backbone=backbone)
    contrast_method = method if method in CONTRAST_METHODS else "contrastive"
    contrast = contrast_of(plain) or explain(
        photo, classes, method=contrast_method, backbone=backbone, contrast="group"
    )
    predictions = plain.top(TOP_N)
    note, trusted = explore_note(group, predictions)
    group_probs = {s.id: float(plain.probs[s.imagenet_index]) for s in group.species}
    label = METHOD_LABELS.get(method, method)
    top = make_grid(
        [_overlays(plain, CELL)],
        row_labels=[f"{label}: where the model looks for each species"],
        col_labels=[f"{s.name}\n{_pct(group_probs[s.id])}" for s in group.species],
        cell_size=CELL,
        title=note,
    )
    captions = []
    for s, raw in zip(group.species, contrast.raw_maps, strict=True):
        empty = [f"Nothing here speaks for {s.name} rather than the others."] if float(raw.max()) <= 0 else []
        captions.append("\n".join(empty + [f"- {t}" for t in s.traits]))
    bottom = make_grid(
        [_overlays(contrast, CELL)],
        captions=[captions],
        row_labels=[f"Contrast ({METHOD_LABELS[contrast_method]}): why this species rather than the others"],
        cell_size=CELL,
    )
    grid = _stack(top, bottom)
    return ExploreResult(grid, predictions, group_probs, note, trusted, group.caveat, plain, contrast)


def _overlays(e: Explanation, side: int) -> list[Image.Image]:
    """One heatmap per class on the crop the model saw, made at the size shown (the crop fitted to `side`)."""
    photo = fit_image(e.image.crop(e.crop_box), side)
    return [overlay(photo, m) for m in e.crop_maps(photo.size)]


def _stack(*images: Image.Image) -> Image.Image:
    """Images one below the other on white."""
    width = max(i.width for i in images)
    out = Image.new("RGB", (width, sum(i.height for i in images)), (255, 255, 255))
    y = 0
    for img in images:
        out.paste(img, (0, y))
        y += img.height
    return out


# --- galleries -------------------------------------------------------------------------------------------------


@dataclass
class GalleryView:
    """The photos of a group that can be shown, and what is missing."""

    photos: list[tuple[Path, str]]  # (file, caption: species and credit)
    links: list[str]  # the credit's link of each photo ("" when none), same order
    credits: str  # Markdown list: one credit line per photo, with its link
    missing: str  # one sentence on the photos that are not available ("" when none)


def gallery(group_id: str) -> GalleryView:
    """The gallery of a group: local photos (TEACHING_GALLERY_DIR) or the download cache, with credits."""
    group = get_group(group_id)
    names = {s.id: s.name for s in group.species}
    photos, links, lines = [], [], []
    missing: dict[str, list[str]] = {}  # reason -> species names, one entry per missing photo
    for item in gallery_photos(group):
        if item.path is None:
            missing.setdefault(str(item.missing), []).append(names[item.species_id])
            continue
        photos.append((item.path, f"{names[item.species_id]}. {item.credit}"))
        links.append(item.link)
        credit = f"[{item.credit}]({item.link})" if item.link else item.credit
        lines.append(f"{len(photos)}. {names[item.species_id]}: {credit}")
    text = ""
    if missing:
        count = sum(len(v) for v in missing.values())
        reasons = [f"{', '.join(dict.fromkeys(species))}: {reason}" for reason, species in missing.items()]
        text = f"{count} photo{'s' if count > 1 else ''} of this group cannot be shown. " + "; ".join(reasons)
        text += ". Uploads always work."
    return GalleryView(photos, links, "\n".join(lines), text)


def download_galleries_in_background() -> threading.Thread | None:
    """Fetch the gallery photos that are not cached yet, in a daemon thread; None when there is nothing to do.

    Nothing is fetched when TEACHING_GALLERY_DIR points at a local folder or TEACHING_NO_DOWNLOAD=1. A photo that
    cannot be fetched (no network, a licence that is not free) is recorded in the cache's manifest, and the
    gallery says why it is missing; uploads work all the same.
    """
    if os.environ.get("TEACHING_GALLERY_DIR") or os.environ.get("TEACHING_NO_DOWNLOAD") == "1":
        return None
    thread = threading.Thread(target=download_gallery, args=(groups(),), name="gallery-download", daemon=True)
    thread.start()
    return thread


def photo_dirs() -> list[Path]:
    """The folders gallery photos are read from (a web server must be allowed to serve them)."""
    local = os.environ.get("TEACHING_GALLERY_DIR")
    return [Path(local).resolve()] if local else [default_cache_dir().resolve()]


# --- compare ---------------------------------------------------------------------------------------------------


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
) -> CompareResult:
    """Explain the top-1 class of each backbone with each method, on the crop the model sees.

    Args:
        image: the photo.
        methods: keys of COMPARE_METHODS; default all the engine knows.
        backbones: default every available backbone (offline ones, and others whose weights are cached).
        progress: called with (fraction done, what runs next).
    """
    photo = read_photo(image)
    methods = list(methods) if methods else available_methods(COMPARE_METHODS)
    backbones = list(backbones) if backbones else available_backbones()
    for m in methods:
        _check_method(m, COMPARE_METHODS)
    for b in backbones:
        _check_backbone(b)
    cells: list[list[Image.Image | None]] = [
        [photo.crop(_model_crop(photo, b))] + [None] * len(methods) for b in backbones
    ]
    captions = [[""] * (len(methods) + 1) for _ in backbones]
    classes: dict[str, tuple[int, str, float]] = {}
    errors: dict[tuple[str, str], str] = {}
    seconds: dict[tuple[str, str], float] = {}
    total, done = len(methods) * len(backbones), 0
    for r, backbone in enumerate(backbones):
        for c, method in enumerate(methods, start=1):
            if progress:
                progress(done / total, f"{METHOD_LABELS.get(method, method)} on {backbone}")
            target = [classes[backbone][0]] if backbone in classes else None
            t0 = time.perf_counter()
            try:
                e = explain(photo, target, method=method, backbone=backbone, top_k=1)
            except TeachingError as exc:
                errors[method, backbone] = str(exc)
                captions[r][c] = str(exc)
            else:
                seconds[method, backbone] = time.perf_counter() - t0
                classes.setdefault(backbone, e.top(1)[0])
                cells[r][c] = _compare_cell(e)
                captions[r][c] = f"{seconds[method, backbone]:.2f} s"
            done += 1
    if progress:
        progress(1.0, "done")
    row_labels = []
    for b in backbones:
        top = classes.get(b)
        row_labels.append(f"{b}: {top[1]} ({_pct(top[2])})" if top else b)
    col_labels = ["what the model sees"] + [
        METHOD_LABELS.get(m, m) + (" (fails the sanity check)" if m in GUIDED_METHODS else "") for m in methods
    ]
    grid = make_grid(cells, captions, row_labels, col_labels, cell_size=COMPARE_CELL)
    return CompareResult(grid, methods, backbones, classes, errors, seconds)


def _model_crop(photo: Image.Image, backbone: str) -> tuple[int, int, int, int]:
    """The box of the photo that the backbone sees (its centre crop)."""
    return preprocess_image(photo, get_spec(backbone).preprocess)[1]


def _compare_cell(e: Explanation) -> Image.Image:
    """The picture of one explanation on the crop the model saw: a heatmap, or the gradient image."""
    crop = fit_image(e.image.crop(e.crop_box), COMPARE_CELL)
    if e.attributions is not None:
        return gradient_image(e.attributions[0]).resize(crop.size, Image.Resampling.BILINEAR)
    return overlay(crop, e.crop_maps(crop.size)[0])


# --- quiz ------------------------------------------------------------------------------------------------------


@dataclass
class QuizStep:
    """What the quiz page shows now."""

    state: dict[str, Any]  # the quiz state to keep for the next call (JSON-safe; kept per browser session)
    phase: str  # "teach", "test" or "done"
    progress: str  # e.g. "Teaching: photo 2 of 6"
    photo: Path | None  # the photo to classify; None when the quiz is over
    choices: list[tuple[str, str]]  # (display name, species id)
    answered: bool = False  # the teaching photo has its feedback: wait for Next
    feedback: str | None = None  # Markdown: right or wrong, the true species, what the model says, the traits
    explanation: Image.Image | None = None  # the contrastive map of the true species (highlight and heatmap)
    score: str | None = None  # Markdown: the test score against chance, per species, confusions


def start_quiz(group_id: str, n_teach: int = 6, n_test: int = 6, seed: int = 0) -> QuizStep:
    """A new quiz over the gallery photos of a group (the same seed gives everyone the same test photos)."""
    group = get_group(group_id)
    images = [(str(p.path), p.species_id) for p in gallery_photos(group) if p.path is not None]
    if not images:
        raise QuizError(f"no photos of {group.title} are available: download the galleries or set TEACHING_GALLERY_DIR")
    state = new_quiz(group, images, QuizConfig(n_teach=n_teach, n_test=n_test, seed=seed))
    return _step(state)


def quiz_answer(state: dict[str, Any] | None, species_id: str | None, now: float | None = None) -> QuizStep:
    """Record a guess: in the teaching phase the feedback and explanation, in the test phase the next photo."""
    quiz = _load(state)
    if not species_id:
        raise QuizError("choose a species first")
    question = current_question(quiz)
    quiz, feedback = answer(quiz, species_id, now)
    if feedback is None or question is None:
        return _step(quiz)
    text, image = _teach(quiz, Path(question.image), feedback)
    if now is None:
        quiz.feedback_at = time.time()  # the pause starts when the learner sees the feedback, not before
    return _step(quiz, answered=True, feedback=text, explanation=image)


def quiz_can_advance(state: dict[str, Any] | None, now: float | None = None) -> bool:
    """True when Next may be pressed (the pause after the feedback has passed)."""
    return state is not None and can_advance(_load(state), now)


def quiz_next(state: dict[str, Any] | None, now: float | None = None) -> QuizStep:
    """Go on after the feedback: the next teaching photo, or the first test photo."""
    return _step(quiz_advance(_load(state), now))


def _load(state: dict[str, Any] | None) -> QuizState:
    if not state:
        raise QuizError("start a quiz first")
    quiz = QuizState.from_dict(state)
    allowed = {str(p.path) for p in gallery_photos(get_group(quiz.group_id)) if p.path is not None}
    if any(q.image not in allowed for q in quiz.teach + quiz.test):
        raise QuizError("the quiz state is damaged: start a new quiz")
    return quiz


def _step(
    quiz: QuizState, answered: bool = False, feedback: str | None = None, explanation: Image.Image | None = None
) -> QuizStep:
    choices = [(name, sid) for sid, name in quiz.names.items()]
    question = current_question(quiz)
    if quiz.phase == "done" or question is None:
        return QuizStep(quiz.to_dict(), "done", "Finished", None, choices, score=_score_text(quiz))
    phase = "Teaching" if quiz.phase == "teach" else "Test (no feedback)"
    total = len(quiz.teach if quiz.phase == "teach" else quiz.test)
    progress = f"{phase}: photo {quiz.index + 1} of {total}"
    return QuizStep(
        quiz.to_dict(), quiz.phase, progress, Path(question.image), choices, answered, feedback, explanation
    )


def _teach(quiz: QuizState, photo_path: Path, feedback: Feedback) -> tuple[str, Image.Image]:
    """The feedback text and the contrastive map of the true species against the guess (or the others)."""
    group = get_group(quiz.group_id)
    true = group.species_by_id(feedback.explain_species_id)
    others = [group.species_by_id(s).imagenet_index for s in feedback.contrast_species_ids]
    photo = read_photo(photo_path)
    if len(others) == 1:
        e = explain(photo, [true.imagenet_index], method="contrastive", contrast="pair", versus=others[0])
    else:
        e = explain(photo, [true.imagenet_index, *others], method="contrastive", contrast="group")
    shown = fit_image(photo, CELL + 96)
    m = e.maps_at(shown.size)[0]
    image = make_grid(
        [[darken_outside(shown, m), overlay(shown, m)]],
        col_labels=["highlight", "heatmap"],
        cell_size=CELL + 96,
    )
    top_index, top_name, top_p = e.top(1)[0]
    model = f"The model gives {true.name} {_pct(float(e.probs[true.imagenet_index]))}."
    if top_index != true.imagenet_index:
        model += f" It would itself say {top_name} ({_pct(top_p)}) here, so read the highlight with care."
    traits = "\n".join(f"- {t}" for t in feedback.traits)
    caveat = f"\n\n*{group.caveat}*" if group.caveat else ""
    text = f"### {feedback.message}\n\n{feedback.caption} {model}{caveat}\n\n**{true.name}:**\n{traits}"
    return text, image


def _score_text(quiz: QuizState) -> str:
    """The test result in Markdown: score against chance, per species, the confusions."""
    s = quiz_score(quiz)
    lines = [
        f"### Your score: {s.n_correct} of {s.n_questions} ({s.accuracy:.0%})",
        f"Guessing at random would give {s.chance:.0%}.",
        "",
        "| species | right |",
        "| --- | --- |",
    ]
    for sid, (right, shown) in s.per_species_counts.items():
        lines.append(f"| {quiz.names[sid]} | {right} of {shown} |")
    if s.confusions:
        lines.append("")
        pairs = sorted(s.confusions.items(), key=lambda kv: (-kv[1], kv[0]))
        for (true, guess), n in pairs:
            times = "once" if n == 1 else f"{n} times"
            lines.append(f"- You took {_a(quiz.names[true])} for {_a(quiz.names[guess])} {times}.")
    else:
        lines += ["", "No confusions: every test photo was right."]
    return "\n".join(lines)
