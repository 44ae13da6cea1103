"""The teaching session as a pure state machine: guess, feedback, explanation, then a test without feedback.

The protocol of Mac Aodha et al., "Teaching Categories to Human Learners with Visual Explanations" (CVPR 2018),
as described in docs/TEACHING.md: in the teaching phase the learner guesses first, then sees "Correct" or "Wrong,
it is X", the explanation to show (the contrastive map of the true species against the species it is confused
with, paired with the trait sentences) and may press Next only after a short pause. The test phase shows new
photos and gives no feedback; ``score`` reports accuracy against chance, per species and the confusions.

The state is a plain dataclass that round-trips through a JSON-safe dict (``to_dict`` / ``from_dict``), so an app
keeps it per browser session and nothing is stored on the server. Functions return a new state and never change
the one they are given.
"""

from __future__ import annotations

import copy
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from teaching.errors import TeachingError
from teaching.galleries import Group

PHASES = ("teach", "test", "done")


class QuizError(TeachingError):
    """An action that the quiz does not allow now (answering twice, an unknown species, Next too early)."""


@dataclass(frozen=True)
class QuizConfig:
    """How long the two phases are and how photos are drawn."""

    n_teach: int = 6  # photos in the teaching phase (0: a control group without teaching)
    n_test: int = 6  # photos in the test phase, never shown in the teaching phase
    pause_s: float = 2.0  # seconds between the feedback and the Next button
    seed: int = 0  # draws and orders the photos: the same seed gives everyone the same test set


@dataclass
class Question:
    """One photo to classify and the learner's answer."""

    image: str  # path (or id) of the photo
    true_species_id: str
    guess: str | None = None


@dataclass(frozen=True)
class Feedback:
    """What the teaching phase shows after a guess."""

    correct: bool
    true_species_id: str
    true_name: str
    guess_species_id: str
    message: str  # "Correct, it is a monarch." / "Wrong, it is a monarch (your answer: a ringlet)."
    explain_species_id: str  # the class whose contrastive map to show: the true species
    contrast_species_ids: tuple[str, ...]  # ...against these: the guess when wrong, else all the others
    caption: str  # one sentence saying what the highlight means
    traits: tuple[str, ...]  # the true species' trait sentences


@dataclass
class QuizState:
    """Everything a session needs, serialisable with ``to_dict``."""

    group_id: str
    names: dict[str, str]  # species id -> display name, in group order
    traits: dict[str, list[str]]  # species id -> trait sentences
    teach: list[Question]
    test: list[Question]
    pause_s: float
    phase: str = "teach"  # "teach", "test" or "done"
    index: int = 0  # position in the current phase
    feedback_at: float | None = None  # when the current teaching photo was answered

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the state."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuizState:
        """The state back from ``to_dict``; QuizError when the dict is damaged."""
        try:
            fields = dict(data)
            for phase in ("teach", "test"):
                fields[phase] = [Question(**q) for q in data[phase]]
            state = cls(**fields)
            current = state.teach if state.phase == "teach" else state.test
            valid = state.phase in PHASES and (state.phase == "done" or 0 <= state.index < len(current))
            questions = state.teach + state.test
            species = {q.true_species_id for q in questions} | {q.guess for q in questions if q.guess is not None}
        except (KeyError, TypeError, ValueError) as e:
            raise QuizError("the quiz state is damaged: start a new quiz") from e
        if not valid or not species <= set(state.names):
            raise QuizError("the quiz state is damaged: start a new quiz")
        return state


@dataclass(frozen=True)
class QuizScore:
    """The test-phase result."""

    n_questions: int  # test photos answered
    n_correct: int
    accuracy: float  # n_correct / n_questions (0 when nothing was answered)
    chance: float  # 1 / number of species in the group
    per_species: dict[str, float]  # species id -> accuracy on its test photos (species shown only)
    per_species_counts: dict[str, tuple[int, int]]  # species id -> (correct, shown)
    confusions: dict[tuple[str, str], int]  # (true, guessed) -> count, wrong answers only
    most_confused: tuple[str, str] | None  # the (true, guessed) pair with the most mistakes


def _deal(
    pools: dict[str, list[str]], order: Sequence[str], n: int, keep: int, may_take: Callable[[str], bool] | None = None
) -> list[Question]:
    """Take up to n photos round-robin over the species, leaving at least `keep` photos in each pool; with
    `may_take`, only photos it allows (asked from the end of the pool; a photo it allows is taken)."""
    picked: list[Question] = []
    while len(picked) < n:
        before = len(picked)
        for species_id in order:
            pool = pools[species_id]
            if len(picked) >= n or len(pool) <= keep:
                continue
            for i in reversed(range(len(pool))):
                if may_take is None or may_take(pool[i]):  # True means taken
                    picked.append(Question(pool.pop(i), species_id))
                    break
        if len(picked) == before:
            break
    return picked


Chooser = Callable[[list[tuple[str, str]], int, random.Random], list[tuple[str, str]]]


def plan_sizes(n_photos: int, n_teachable: int, n_teach: int, n_test: int) -> tuple[int, int]:
    """How many teaching and test photos a quiz over `n_photos` (of which `n_teachable` may teach) will use."""
    if n_photos == 0:
        return 0, 0
    if n_photos < n_teach + n_test:
        n_test = max(1, n_photos * n_test // max(1, n_teach + n_test))
        n_teach = n_photos - n_test
    n_teach = min(n_teach, n_teachable, n_photos - min(n_test, n_photos))
    return max(0, n_teach), min(n_test, n_photos)


def new_quiz(
    group: Group,
    images: Sequence[tuple[str | Path, str]],
    config: QuizConfig | None = None,
    teachable: Collection[str] | None = None,
    choose: Chooser | None = None,
) -> QuizState:
    """A new session over (photo, species id) pairs of the group.

    Test photos are balanced over the species and never shown in the teaching phase. Only photos in `teachable`
    (default: all) may teach: the photos the model gets right (`teaching.pool`); the test phase may use the others.
    `choose(candidates, k, rng)` orders the teaching photos (a learner-model teacher, `teaching.selection`);
    default: at random. With fewer photos than asked both phases shrink (`plan_sizes`).
    """
    config = config or QuizConfig()
    if config.n_teach < 0 or config.n_test < 1 or config.pause_s < 0:
        raise QuizError("a quiz needs n_teach >= 0, n_test >= 1 and pause_s >= 0")
    names = {s.id: s.name for s in group.species}
    pools: dict[str, list[str]] = {species_id: [] for species_id in names}
    for image, species_id in images:
        if species_id not in pools:
            raise QuizError(f"photo {image} is of '{species_id}', which is not in group '{group.id}'")
        if str(image) not in pools[species_id]:
            pools[species_id].append(str(image))
    total = sum(len(p) for p in pools.values())
    if total == 0:
        raise QuizError(f"group '{group.id}' has no photos: download the gallery or set TEACHING_GALLERY_DIR")
    can_teach = {str(t) for t in teachable} if teachable is not None else {p for v in pools.values() for p in v}
    rng = random.Random(config.seed)
    for pool in pools.values():
        pool.sort()
        rng.shuffle(pool)
    n_teach, n_test = plan_sizes(total, len(can_teach), config.n_teach, config.n_test)
    order = list(names)
    rng.shuffle(order)
    slack = [len(can_teach) - n_teach]  # teachable photos the test may still take

    def may_take(photo: str) -> bool:
        """A test photo, unless it is teachable and the teaching phase needs it (or it is its species' last one)."""
        if photo not in can_teach:
            return True
        species_left = next(sum(p in can_teach for p in pool) for pool in pools.values() if photo in pool)
        if slack[0] <= 0 or (n_teach > 0 and species_left <= 1):
            return False
        slack[0] -= 1
        return True

    test = _deal(pools, order, n_test, keep=1, may_take=may_take)
    test += _deal(pools, order, n_test - len(test), keep=0, may_take=may_take)
    candidates = [(p, s) for s, pool in pools.items() for p in sorted(pool) if p in can_teach]
    if choose is not None:
        teach = [Question(p, s) for p, s in choose(candidates, n_teach, rng)[:n_teach]]
    else:
        teach = _deal({s: [p for p in pool if p in can_teach] for s, pool in pools.items()}, order, n_teach, keep=0)
        rng.shuffle(teach)
    rng.shuffle(test)
    traits = {s.id: list(s.traits) for s in group.species}
    phase = "teach" if teach else "test"
    return QuizState(group.id, names, traits, teach, test, config.pause_s, phase)


def current_question(state: QuizState) -> Question | None:
    """The photo to show now; None when the quiz is over."""
    if state.phase == "done":
        return None
    return (state.teach if state.phase == "teach" else state.test)[state.index]


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _feedback(state: QuizState, question: Question) -> Feedback:
    true_id, guess = question.true_species_id, str(question.guess)
    correct = guess == true_id
    true_name = state.names[true_id]
    others = (guess,) if not correct else tuple(s for s in state.names if s != true_id)
    if correct:
        message = f"Correct, it is {_a(true_name)}."
    else:
        message = f"Wrong, it is {_a(true_name)} (your answer: {_a(state.names[guess])})."
    rather = " or ".join(_a(state.names[s]) for s in others)
    caption = f"The highlight shows what makes this {_a(true_name)} rather than {rather}."
    traits = tuple(state.traits[true_id])
    return Feedback(correct, true_id, true_name, guess, message, true_id, others, caption, traits)


def answer(state: QuizState, species_id: str, now: float | None = None) -> tuple[QuizState, Feedback | None]:
    """Record the learner's guess for the current photo.

    In the teaching phase returns the feedback and starts the pause (``now``: the clock, default time.time());
    in the test phase returns no feedback and moves straight to the next photo.
    """
    question = current_question(state)
    if question is None:
        raise QuizError("the quiz is over: start a new one")
    if species_id not in state.names:
        raise QuizError(f"unknown species '{species_id}': choose one of {', '.join(state.names)}")
    if question.guess is not None:
        raise QuizError("this photo is already answered: press Next")
    state = copy.deepcopy(state)
    question = (state.teach if state.phase == "teach" else state.test)[state.index]
    question.guess = species_id
    if state.phase == "test":
        state.index += 1
        if state.index == len(state.test):
            state.phase, state.index = "done", 0
        return state, None
    state.feedback_at = time.time() if now is None else now
    return state, _feedback(state, question)


def can_advance(state: QuizState, now: float | None = None) -> bool:
    """True when the teaching photo is answered and the pause has passed (the Next button is enabled)."""
    if state.phase != "teach" or state.feedback_at is None:
        return False
    return (time.time() if now is None else now) - state.feedback_at >= state.pause_s


def advance(state: QuizState, now: float | None = None) -> QuizState:
    """Go to the next teaching photo, or to the test phase after the last one."""
    if state.phase != "teach":
        raise QuizError("Next is only used in the teaching phase: answer the photo to go on")
    if state.feedback_at is None:
        raise QuizError("answer first: which species is it?")
    if not can_advance(state, now):
        raise QuizError(f"look at the explanation first: Next is enabled {state.pause_s:g} s after the feedback")
    state = copy.deepcopy(state)
    state.index, state.feedback_at = state.index + 1, None
    if state.index == len(state.teach):
        state.phase, state.index = "test", 0
    return state


def score(state: QuizState) -> QuizScore:
    """Accuracy on the answered test photos, against chance, per species, and the confusions."""
    answered = [q for q in state.test if q.guess is not None]
    correct = sum(q.guess == q.true_species_id for q in answered)
    counts: dict[str, tuple[int, int]] = {}
    for species_id in state.names:
        shown = [q for q in answered if q.true_species_id == species_id]
        if shown:
            counts[species_id] = (sum(q.guess == species_id for q in shown), len(shown))
    confusions = Counter((q.true_species_id, str(q.guess)) for q in answered if q.guess != q.true_species_id)
    most = min(confusions, key=lambda pair: (-confusions[pair], pair)) if confusions else None
    return QuizScore(
        n_questions=len(answered),
        n_correct=correct,
        accuracy=correct / len(answered) if answered else 0.0,
        chance=1 / len(state.names),
        per_species={s: c / n for s, (c, n) in counts.items()},
        per_species_counts=counts,
        confusions=dict(confusions),
        most_confused=most,
    )
