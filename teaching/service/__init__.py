"""What the app (and any other front end) calls: validate the input, run the engine, return results ready to show.

Nothing here imports Gradio. Every function takes plain values (a photo path or image, a group id, method and
backbone names, a quiz state dict) and returns a dataclass of images, numbers and sentences. Errors meant for the
user are `TeachingError`s with a one-line message; the caller shows the message as it is.

One module per page, and the parts they share:

    explore.py   `explore`: one photo, one species group, plain and contrastive maps per species with the traits
    compare.py   `compare`: one photo, a matrix of methods x backbones, with the sanity-check note
    gallery.py   `gallery`: a group's photos with their credits; the background download; `photo_dirs`
    quiz.py      `start_quiz`, `quiz_plan`, `quiz_answer`, `quiz_next`, `quiz_can_advance`: `teaching.quiz`'s protocol
    catalog.py   the methods and backbones each page offers, labelled and checked from the method classes' facts
    groups.py    the species groups;   files.py: JPEG/PNG files in a temp folder
    photos.py    the checked photo, opened only inside the folders a front end allows (`allowed_photo`)
    text.py      how numbers read in sentences, and every sentence of the pages in English and Chinese (`say`)

The pages import the shared modules (catalog, groups, photos, text), never one another. The functions `explore`,
`compare` and `gallery` carry their module's name, and the package attribute is the function:
`teaching.service.explore(...)` explains a photo; reach the module itself with
`importlib.import_module("teaching.service.explore")` (`import teaching.service.explore as m` gives the function).
"""

from teaching.service.catalog import (
    COMPARE_METHODS,
    DEFAULT_BACKBONE,
    EXPLORE_METHODS,
    available_backbones,
    available_methods,
    default_compare_backbones,
    default_compare_methods,
    method_choices,
    warm_up,
    weights_available,
)
from teaching.service.compare import COMPARE_CELL, SANITY_NOTE, CompareResult, Progress, compare
from teaching.service.explore import CELL, TOP_N, ExploreResult, SpeciesCard, explore, explore_note, photo_note
from teaching.service.files import save_jpeg, save_png
from teaching.service.gallery import GalleryView, download_galleries_in_background, gallery, gallery_notes, photo_dirs
from teaching.service.groups import default_group, get_group, group_choices, groups
from teaching.service.photos import MAX_UPLOAD_BYTES, NOT_AVAILABLE, allowed_photo, read_photo
from teaching.service.quiz import (
    QuizStep,
    quiz_answer,
    quiz_can_advance,
    quiz_next,
    quiz_plan,
    quiz_resume,
    start_quiz,
)
from teaching.service.text import LANGS, NO_NETWORK, check_lang, percent, say

__all__ = [
    "CELL",
    "COMPARE_CELL",
    "COMPARE_METHODS",
    "DEFAULT_BACKBONE",
    "EXPLORE_METHODS",
    "MAX_UPLOAD_BYTES",
    "NOT_AVAILABLE",
    "NO_NETWORK",
    "SANITY_NOTE",
    "TOP_N",
    "CompareResult",
    "ExploreResult",
    "GalleryView",
    "LANGS",
    "Progress",
    "QuizStep",
    "allowed_photo",
    "SpeciesCard",
    "available_backbones",
    "available_methods",
    "check_lang",
    "compare",
    "default_compare_backbones",
    "default_compare_methods",
    "default_group",
    "download_galleries_in_background",
    "explore",
    "explore_note",
    "gallery",
    "gallery_notes",
    "get_group",
    "group_choices",
    "groups",
    "method_choices",
    "percent",
    "photo_note",
    "photo_dirs",
    "quiz_answer",
    "quiz_can_advance",
    "quiz_next",
    "quiz_plan",
    "quiz_resume",
    "read_photo",
    "save_jpeg",
    "save_png",
    "say",
    "start_quiz",
    "warm_up",
    "weights_available",
]
