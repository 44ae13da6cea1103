"""The command line's `explain` run in a language: its class names and the words of its grid (`--lang zh`).

The names of the classes of the species groups come from the groups (非洲象, 亚洲象, ...), the words from the one
table of sentences (`text.say`); the other ImageNet classes keep their English names. The grid is drawn in Chinese
only when a font with Chinese glyphs is installed (`teaching.render.cjk_font`); else it stays in English and
`localize` returns the line to print.
"""

from __future__ import annotations

from dataclasses import replace

from teaching.labels import imagenet_classes
from teaching.outputs import Settings
from teaching.service.groups import species_names
from teaching.service.text import bar_words, check_lang, drawn_lang, say


def localize(s: Settings, lang: str) -> tuple[Settings, str]:
    """The run's settings with its names and its grid's words in `lang`, and one line to print ("" when none).

    The names apply only to a model with ImageNet's classes (a model with its own `--labels` keeps its names)."""
    lang = check_lang(lang)
    if lang == "en" or tuple(s.backbone.labels) != imagenet_classes():
        return s, ""
    names = species_names(lang)
    drawn = drawn_lang(lang)
    if drawn == "en":
        return replace(s, names=names), say("no_font", lang)
    return replace(s, names=names, grid_names=names, title=grid_title(s, drawn, names), bar=bar_words(drawn)), ""


def grid_title(s: Settings, lang: str, names: dict[int, str]) -> str:
    """The title of grid.png: method, model, layer, and the contrast, in `lang`."""
    title = say("run_title", lang, method=s.method, backbone=s.backbone.name, layer=s.layer)
    if s.contrast == "pair" and s.versus is not None:
        title += say("run_pair", lang, name=names.get(s.versus, s.backbone.labels[s.versus]))
    elif s.contrast == "group":
        title += say("run_group", lang)
    return title
