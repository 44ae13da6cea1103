"""The teaching/test protocol as a state machine: seeded runs, pause, invalid actions, serialisation."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from teaching.galleries import Group, Species
from teaching.quiz import (
    QuizConfig,
    QuizError,
    QuizState,
    advance,
    answer,
    can_advance,
    current_question,
    new_quiz,
    score,
)

GROUP = Group(
    "sharks",
    "Sharks",
    "Three sharks.",
    (
        Species("hammerhead", "hammerhead", 4, ("Hammer head.", "Eyes at the ends."), "hammerhead"),
        Species("great_white_shark", "great white shark", 2, ("White belly.", "Conical snout."), "great_white_shark"),
        Species("tiger_shark", "tiger shark", 3, ("Stripes.", "Blunt snout."), "tiger_shark"),
    ),
)
SPECIES = [s.id for s in GROUP.species]


def _images(counts: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{sid}/{i}.jpg", sid) for sid, n in counts.items() for i in range(n)]


TWELVE = _images({"hammerhead": 4, "great_white_shark": 4, "tiger_shark": 4})


def _teach_all(state: QuizState, clock: float = 0.0) -> QuizState:
    """Answer every teaching photo correctly, waiting out the pause each time."""
    while state.phase == "teach":
        question = current_question(state)
        assert question is not None
        state, _ = answer(state, question.true_species_id, now=clock)
        clock += state.pause_s
        state = advance(state, now=clock)
    return state


def test_full_seeded_run_scores_exactly() -> None:
    state = new_quiz(GROUP, TWELVE, QuizConfig(n_teach=6, n_test=6, seed=3))
    assert (state.phase, len(state.teach), len(state.test)) == ("teach", 6, 6)
    assert Counter(q.true_species_id for q in state.test) == {s: 2 for s in SPECIES}
    assert Counter(q.true_species_id for q in state.teach) == {s: 2 for s in SPECIES}
    state = _teach_all(state)
    assert state.phase == "test"
    tiger_seen = 0
    while state.phase == "test":
        question = current_question(state)
        assert question is not None
        true = question.true_species_id
        guess = {"hammerhead": "hammerhead", "great_white_shark": "tiger_shark"}.get(true)
        if true == "tiger_shark":  # first one right, second one taken for a hammerhead
            guess, tiger_seen = ("tiger_shark" if tiger_seen == 0 else "hammerhead"), tiger_seen + 1
        state, feedback = answer(state, str(guess))
        assert feedback is None  # no feedback in the test phase
    assert state.phase == "done" and current_question(state) is None
    result = score(state)
    assert (result.n_questions, result.n_correct, result.accuracy) == (6, 3, 0.5)
    assert result.chance == pytest.approx(1 / 3)
    assert result.per_species == {"hammerhead": 1.0, "great_white_shark": 0.0, "tiger_shark": 0.5}
    assert result.per_species_counts == {"hammerhead": (2, 2), "great_white_shark": (0, 2), "tiger_shark": (1, 2)}
    assert result.confusions == {("great_white_shark", "tiger_shark"): 2, ("tiger_shark", "hammerhead"): 1}
    assert result.most_confused == ("great_white_shark", "tiger_shark")


def test_photo_choice_is_seeded_disjoint_and_balanced() -> None:
    first = new_quiz(GROUP, TWELVE, QuizConfig(seed=7))
    assert new_quiz(GROUP, list(reversed(TWELVE)), QuizConfig(seed=7)) == first  # input order does not matter
    assert new_quiz(GROUP, TWELVE, QuizConfig(seed=8)).test != first.test
    assert not {q.image for q in first.teach} & {q.image for q in first.test}
    # Nine photos (2 + 3 + 4) for 6 + 6 questions: both phases shrink, stay disjoint, and the test shows each species.
    nine = new_quiz(GROUP, _images({"hammerhead": 2, "great_white_shark": 3, "tiger_shark": 4}), QuizConfig(seed=1))
    assert (len(nine.teach), len(nine.test)) == (5, 4)
    assert not {q.image for q in nine.teach} & {q.image for q in nine.test}
    assert {q.true_species_id for q in nine.test} == set(SPECIES)
    assert {q.true_species_id for q in nine.teach} == set(SPECIES)
    # A species with a single photo is kept for teaching.
    single = new_quiz(GROUP, _images({"hammerhead": 1, "great_white_shark": 6, "tiger_shark": 6}), QuizConfig(seed=2))
    assert [q.image for q in single.teach if q.true_species_id == "hammerhead"] == ["hammerhead/0.jpg"]
    assert Counter(q.true_species_id for q in single.test) == {"great_white_shark": 3, "tiger_shark": 3}


def test_feedback_names_the_truth_and_the_contrast() -> None:
    state = new_quiz(GROUP, TWELVE, QuizConfig(seed=0))
    question = current_question(state)
    assert question is not None
    true = question.true_species_id
    wrong = next(s for s in SPECIES if s != true)
    after, feedback = answer(state, wrong, now=10.0)
    assert current_question(state) == question and question.guess is None  # the given state is unchanged
    assert feedback is not None and not feedback.correct
    name, wrong_name = GROUP.species_by_id(true).name, GROUP.species_by_id(wrong).name
    assert feedback.message == f"Wrong, it is a {name} (your answer: a {wrong_name})."
    assert (feedback.explain_species_id, feedback.contrast_species_ids) == (true, (wrong,))
    assert feedback.caption == f"The highlight shows what makes this a {name} rather than a {wrong_name}."
    assert feedback.traits == GROUP.species_by_id(true).traits
    _, right = answer(state, true, now=10.0)
    assert right is not None and right.correct and right.message == f"Correct, it is a {name}."
    assert right.contrast_species_ids == tuple(s for s in SPECIES if s != true)


def test_next_is_enabled_only_after_the_pause() -> None:
    state = new_quiz(GROUP, TWELVE, QuizConfig(pause_s=2.0, seed=0))
    assert not can_advance(state, now=1000.0)
    with pytest.raises(QuizError, match="answer first"):
        advance(state, now=1000.0)
    question = current_question(state)
    assert question is not None
    state, _ = answer(state, question.true_species_id, now=100.0)
    assert not can_advance(state, now=101.9)
    with pytest.raises(QuizError, match="enabled 2 s after the feedback"):
        advance(state, now=101.0)
    assert can_advance(state, now=102.0)
    state = advance(state, now=102.0)
    assert state.index == 1 and state.feedback_at is None and not can_advance(state, now=200.0)


def test_invalid_actions_raise_quiz_errors() -> None:
    state = new_quiz(GROUP, TWELVE, QuizConfig(n_teach=1, n_test=1, seed=0))
    question = current_question(state)
    assert question is not None
    with pytest.raises(QuizError, match="unknown species 'whale_shark'"):
        answer(state, "whale_shark")
    state, _ = answer(state, question.true_species_id, now=0.0)
    with pytest.raises(QuizError, match="already answered"):
        answer(state, question.true_species_id, now=0.0)
    state = advance(state, now=5.0)
    with pytest.raises(QuizError, match="only used in the teaching phase"):
        advance(state, now=10.0)
    state, _ = answer(state, "hammerhead")
    with pytest.raises(QuizError, match="the quiz is over"):
        answer(state, "hammerhead")
    with pytest.raises(QuizError, match="not in group 'sharks'"):
        new_quiz(GROUP, [("x.jpg", "monarch")])
    with pytest.raises(QuizError, match="has no photos"):
        new_quiz(GROUP, [])
    with pytest.raises(QuizError, match="n_test >= 1"):
        new_quiz(GROUP, TWELVE, QuizConfig(n_test=0))


def test_state_round_trips_through_json() -> None:
    state = new_quiz(GROUP, TWELVE, QuizConfig(seed=5))
    question = current_question(state)
    assert question is not None
    state, _ = answer(state, "tiger_shark", now=42.5)
    back = QuizState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back == state and can_advance(back, now=44.5)
    damaged = state.to_dict() | {"index": 99}
    with pytest.raises(QuizError, match="damaged"):
        QuizState.from_dict(damaged)
    with pytest.raises(QuizError, match="damaged"):
        QuizState.from_dict({"group_id": "sharks"})


def test_no_teaching_phase_for_a_control_group() -> None:
    state = new_quiz(GROUP, TWELVE, QuizConfig(n_teach=0, n_test=3, seed=0))
    assert state.phase == "test" and state.teach == [] and len(state.test) == 3
    for _ in range(3):
        state, _ = answer(state, "hammerhead")
    assert score(state).n_questions == 3 and score(state).per_species_counts["hammerhead"][1] == 1
