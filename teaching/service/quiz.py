"""The Quiz page: the teaching protocol of `teaching.quiz`, turned into what a page shows.

A photo and the species to choose from; in the teaching phase, feedback with the contrastive map of the true species
and its traits; at the end, the score against chance. The quiz state travels with the page (a JSON-safe dict) and is
checked on every call.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from teaching.api import explain, prepare
from teaching.galleries import Group, gallery_photos
from teaching.models import DEFAULT_BACKBONE
from teaching.pool import PoolPhoto, group_pool
from teaching.quiz import (
    Chooser,
    Feedback,
    QuizConfig,
    QuizError,
    QuizState,
    answer,
    can_advance,
    current_question,
    new_quiz,
    plan_sizes,
)
from teaching.quiz import advance as quiz_advance
from teaching.quiz import score as quiz_score
from teaching.render import darken_outside, fit_image, make_grid, overlay
from teaching.selection import STRATEGIES, learner_model, select
from teaching.service.groups import get_group
from teaching.service.photos import read_photo
from teaching.service.text import NO_NETWORK, a_name, check_lang, download_failed, percent, say

STRATEGY = "random"  # among the photos the model gets right: STRICT and EXPLAIN did not beat it (docs/TEACHING.md)
FEEDBACK_CELL = 320  # side of the photo in the feedback pictures (larger than a cell of the Explore grid)


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
    guess: str | None = None  # the learner's answer to the photo shown (kept selected next to the feedback)
    message: str = ""  # one line for the page: how many photos the quiz uses, or "choose a species first"
    seed: int | None = None  # the seed of this quiz (set on start): the same seed gives the same test photos


def start_quiz(
    group_id: str,
    n_teach: int = 6,
    n_test: int = 6,
    seed: int | None = None,
    strategy: str = STRATEGY,
    lang: str = "en",
) -> QuizStep:
    """A new quiz over the gallery photos of a group.

    Without a seed each start draws new test photos and a new teaching sequence; with one, every learner gets the
    same test photos (and the same teaching sequence). Only photos the model gets right within the group teach
    (`teaching.pool`); the teaching photos are chosen by `strategy` ("explain", "strict" or "random",
    `teaching.selection`). `message` says how many photos the quiz will use when the group has fewer than asked.
    `lang` ("en" or "zh") is the language of what the step shows, here and in the calls that follow.
    """
    group = get_group(group_id)
    if strategy not in STRATEGIES:
        raise QuizError(f"unknown teaching strategy '{strategy}': one of {', '.join(STRATEGIES)}")
    listed = gallery_photos(group)
    images = [p for p in listed if p.path is not None]
    if not images and download_failed([str(p.missing) for p in listed]):
        raise QuizError(NO_NETWORK)
    if not images:
        raise QuizError(f"no photos of {group.title} are available: download the galleries or set TEACHING_GALLERY_DIR")
    seed = secrets.randbelow(1_000_000) if seed is None else int(seed)
    pool = group_pool(group, images)
    teachable = {str(p.path) for p in pool if p.verdict.right}
    by_path = {str(p.path): p for p in pool}
    config = QuizConfig(n_teach=n_teach, n_test=n_test, seed=seed)
    images_of = [(str(p.path), p.species_id) for p in pool]
    state = new_quiz(group, images_of, config, teachable, _chooser(group, by_path, strategy))
    step = _step(state, lang=lang)
    step.seed = seed
    step.message = _plan_message(len(pool), len(teachable), n_teach, n_test, len(state.teach), len(state.test), lang)
    return step


def _chooser(group: Group, pool: dict[str, PoolPhoto], strategy: str) -> Chooser:
    """The teacher: `selection.select` over the learner model of the candidates, its hypotheses seeded by the quiz."""
    ids = [s.id for s in group.species]

    def choose(candidates: list[tuple[str, str]], k: int, rng: random.Random) -> list[tuple[str, str]]:
        if k <= 0 or not candidates:
            return []
        gen = np.random.default_rng(rng.randrange(2**32))
        if strategy == "random" or len(candidates) < 3:
            return [candidates[i] for i in gen.permutation(len(candidates))[:k]]
        photos = [pool[p] for p, _ in candidates]
        labels = [ids.index(p.species_id) for p in photos]
        model = learner_model(np.stack([p.features for p in photos]), labels, len(ids), gen)
        entropy = np.array([p.explain_entropy for p in photos])
        return [candidates[i] for i in select(model, k, strategy, gen, entropy=entropy)]

    return choose


def _plan_message(
    n_photos: int, n_right: int, n_teach: int, n_test: int, got_teach: int, got_test: int, lang: str = "en"
) -> str:
    """One line when the quiz uses fewer photos than asked ("" when it uses what was asked)."""
    if (got_teach, got_test) == (n_teach, n_test):
        return ""
    return say("quiz_plan", lang, n=n_photos, right=n_right, teach=got_teach, test=got_test)


def quiz_plan(group_id: str, n_teach: int, n_test: int, lang: str = "en") -> str:
    """Before a start: how many photos a quiz of the group will use when it has fewer than asked ("" otherwise),
    in `lang`."""
    group = get_group(group_id)
    images = [p for p in gallery_photos(group) if p.path is not None]
    if not images:
        return ""
    pool = group_pool(group, images)
    n_right = sum(p.verdict.right for p in pool)
    got_teach, got_test = plan_sizes(len(pool), n_right, n_teach, n_test)
    return _plan_message(len(pool), n_right, n_teach, n_test, got_teach, got_test, lang)


def quiz_answer(
    state: dict[str, Any] | None, species_id: str | None, now: float | None = None, lang: str = "en"
) -> QuizStep:
    """Record a guess: in the teaching phase the feedback and explanation, in the test phase the next photo.

    With no species chosen nothing changes: the same photo comes back with the message "choose a species first".
    """
    quiz = _load(state)
    if not species_id:
        step = _step(quiz, lang=lang)
        step.message = say("quiz_choose", lang)
        return step
    question = current_question(quiz)
    quiz, feedback = answer(quiz, species_id, now)
    if feedback is None or question is None:
        return _step(quiz, lang=lang)
    text, image = _teach(quiz, Path(question.image), feedback, lang)
    if now is None:
        quiz.feedback_at = time.time()  # the pause starts when the learner sees the feedback, not before
    step = _step(quiz, answered=True, feedback=text, explanation=image, lang=lang)
    step.guess = species_id
    return step


def quiz_can_advance(state: dict[str, Any] | None, now: float | None = None) -> bool:
    """True when Next may be pressed (the pause after the feedback has passed)."""
    return state is not None and can_advance(_load(state), now)


def quiz_next(state: dict[str, Any] | None, now: float | None = None, lang: str = "en") -> QuizStep:
    """Go on after the feedback: the next teaching photo, or the first test photo."""
    return _step(quiz_advance(_load(state), now), lang=lang)


def quiz_resume(state: dict[str, Any] | None, lang: str = "en") -> QuizStep:
    """Where a saved quiz stands (after a page reload): its current photo, or the next one after a feedback."""
    quiz = _load(state)
    if quiz.feedback_at is not None:
        if can_advance(quiz):
            return _step(quiz_advance(quiz), lang=lang)
        return _step(quiz, answered=True, lang=lang)
    return _step(quiz, lang=lang)


def _load(state: dict[str, Any] | None) -> QuizState:
    """The quiz of a state sent back by the page, refused when it names photos outside the group's gallery."""
    if not state:
        raise QuizError("start a quiz first")
    quiz = QuizState.from_dict(state)
    allowed = {str(p.path) for p in gallery_photos(get_group(quiz.group_id)) if p.path is not None}
    if any(q.image not in allowed for q in quiz.teach + quiz.test):
        raise QuizError("the quiz state is damaged: start a new quiz")
    return quiz


def _step(
    quiz: QuizState,
    answered: bool = False,
    feedback: str | None = None,
    explanation: Image.Image | None = None,
    lang: str = "en",
) -> QuizStep:
    """What the page shows for the quiz as it is now."""
    lang = check_lang(lang)
    names = _names(quiz, lang)
    choices = [(name, sid) for sid, name in names.items()]
    question = current_question(quiz)
    if quiz.phase == "done" or question is None:
        done = say("quiz_done", lang)
        return QuizStep(quiz.to_dict(), "done", done, None, choices, score=_score_text(quiz, lang))
    total = len(quiz.teach if quiz.phase == "teach" else quiz.test)
    progress = say("quiz_teach" if quiz.phase == "teach" else "quiz_test", lang, i=quiz.index + 1, n=total)
    return QuizStep(
        quiz.to_dict(), quiz.phase, progress, Path(question.image), choices, answered, feedback, explanation
    )


def _names(quiz: QuizState, lang: str) -> dict[str, str]:
    """Species id -> name in `lang`: the group's Chinese names, or the names the quiz was started with."""
    if lang == "en":
        return dict(quiz.names)
    group = get_group(quiz.group_id)
    return {sid: group.species_by_id(sid).label(lang) for sid in quiz.names}


def _teach(quiz: QuizState, photo_path: Path, feedback: Feedback, lang: str = "en") -> tuple[str, Image.Image]:
    """The feedback text and the contrastive map of the true species against the guess (or the others)."""
    group = get_group(quiz.group_id)
    true = group.species_by_id(feedback.explain_species_id)
    others = [group.species_by_id(s).imagenet_index for s in feedback.contrast_species_ids]
    prepared = prepare(read_photo(photo_path), DEFAULT_BACKBONE, decoded=True)
    photo = prepared.image
    if len(others) == 1:
        e = explain(prepared, [true.imagenet_index], method="contrastive", contrast="pair", versus=others[0])
    else:
        e = explain(prepared, [true.imagenet_index, *others], method="contrastive", contrast="group")
    shown = fit_image(photo.crop(e.crop_box), FEEDBACK_CELL)  # the crop the model saw: no cut-off map
    m = e.shown_crop(shown.size)[0]  # on the row's scale: faint when the other species have more evidence
    image = make_grid(
        [[darken_outside(shown, m), overlay(shown, m)]],
        col_labels=["highlight", "heatmap"],
        cell_size=FEEDBACK_CELL,
    )
    top_index, top_name, top_p = e.top(1)[0]
    lang = check_lang(lang)
    names = _names(quiz, lang)
    if top_index in group.class_indices:  # one name per species: the group's, not ImageNet's
        top_name = group.species_by_index(top_index).label(lang)
    model = say("quiz_model", lang, true=true.label(lang), p=percent(float(e.probs[true.imagenet_index])))
    if top_index != true.imagenet_index:
        model += say("quiz_model_other", lang, other=top_name, p=percent(top_p))
    if lang == "en":
        message, caption = feedback.message, feedback.caption
    else:
        key = "quiz_correct" if feedback.correct else "quiz_wrong"
        message = say(key, lang, true=names[true.id], guess=names[feedback.guess_species_id], a_true="", a_guess="")
        rather = say("quiz_or", lang).join(names[s] for s in feedback.contrast_species_ids)
        caption = say("quiz_caption", lang, true=names[true.id], rather=rather, a_true="")
    traits = "\n".join(f"- {t}" for t in true.trait_list(lang))
    caveat = group.text("caveat", lang)
    caveat = f"\n\n*{caveat}*" if caveat else ""
    sep = "" if lang == "zh" else " "
    text = f"### {message}\n\n{caption}{sep}{model}{caveat}\n\n**{true.label(lang)}:**\n{traits}"
    return text, image


def _score_text(quiz: QuizState, lang: str = "en") -> str:
    """The test result in Markdown: score against chance, per species, the confusions."""
    s = quiz_score(quiz)
    names = _names(quiz, lang)
    lines = [
        "### " + say("quiz_score", lang, right=s.n_correct, n=s.n_questions, acc=f"{s.accuracy:.0%}"),
        say("quiz_chance", lang, chance=f"{s.chance:.0%}"),
        "",
        say("quiz_table", lang),
        "| --- | --- |",
    ]
    for sid, (right, shown) in s.per_species_counts.items():
        lines.append(f"| {names[sid]} | {say('quiz_row', lang, right=right, shown=shown)} |")
    if s.confusions:
        lines.append("")
        pairs = sorted(s.confusions.items(), key=lambda kv: (-kv[1], kv[0]))
        for (true, guess), n in pairs:
            times = say("quiz_once", lang) if n == 1 else say("quiz_times", lang, n=n)
            t, g = names[true], names[guess]
            lines.append(
                "- " + say("quiz_confusion", lang, a_true=a_name(t), a_guess=a_name(g), true=t, guess=g, times=times)
            )
    else:
        lines += ["", say("quiz_none", lang)]
    return "\n".join(lines)
