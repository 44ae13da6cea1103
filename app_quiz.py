"""The Quiz tab's event handlers for app.py: each turns a `teaching.service` quiz step into component updates.

Kept apart from app.py (layout and wiring) so that each stays short; like app.py it only calls the service.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gradio as gr

from teaching import service
from teaching.errors import TeachingError

ERROR_S = 8  # seconds a message toast stays, so that it does not linger over another tab
TICK_S = 0.5  # how often the quiz checks whether Next may be enabled


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show the one-line message of a TeachingError in the page (a gr.Error) instead of a generic failure."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TeachingError as exc:
            raise gr.Error(str(exc), duration=ERROR_S, print_exception=False) from None

    return wrapper


def _quiz_outputs(step: service.QuizStep, lang: str = "en") -> tuple[Any, ...]:
    """The values of every quiz component for one step (the seed's line in `lang`)."""
    running = step.phase != "done"
    status = " ".join(t for t in (f"**{step.progress}**", step.message) if t)
    if step.seed is not None:
        status += "\n\n" + service.say("quiz_seed", lang, seed=step.seed)
    return (
        step.state,
        status,
        gr.Image(value=str(step.photo) if step.photo else None, visible=running),
        gr.Radio(choices=step.choices, value=step.guess, interactive=running and not step.answered, visible=running),
        gr.Button(interactive=False, visible=running),  # enabled once a species is chosen
        step.feedback or "",
        gr.Image(value=step.explanation, visible=step.explanation is not None),
        gr.Button(interactive=False, visible=step.answered),
        step.score or "",
        gr.Timer(active=step.answered),
    )


@user_errors
def start_quiz(
    group_id: str, n_teach: float, n_test: float, seed: str | None = None, lang: str = "en"
) -> tuple[Any, ...]:
    """A new quiz over the gallery photos of the group (a new draw at each start unless a seed is given)."""
    text = str(seed or "").strip()
    if text and not text.isdigit():
        raise TeachingError(f"the seed must be a whole number, got '{text[:20]}'")
    return _quiz_outputs(
        service.start_quiz(group_id, int(n_teach), int(n_test), int(text) if text else None, lang=lang), lang
    )


def quiz_plan(group_id: str, n_teach: float, n_test: float, lang: str = "en") -> str:
    """Before a start: how many photos the quiz will use when the group has fewer than asked."""
    try:
        return service.quiz_plan(group_id, int(n_teach), int(n_test), lang)
    except TeachingError:
        return ""


def choice_made(species_id: str | None) -> Any:
    """Answer is enabled once a species is chosen."""
    return gr.Button(interactive=bool(species_id))


@user_errors
def quiz_answer(state: dict[str, Any] | None, species_id: str | None, lang: str = "en") -> tuple[Any, ...]:
    """Record the learner's guess."""
    return _quiz_outputs(service.quiz_answer(state, species_id, lang=lang))


@user_errors
def quiz_next(state: dict[str, Any] | None, lang: str = "en") -> tuple[Any, ...]:
    """The next photo after the feedback."""
    return _quiz_outputs(service.quiz_next(state, lang=lang))


def enable_next(state: dict[str, Any] | None) -> tuple[Any, Any]:
    """Enable Next (and stop the timer) once the pause after the feedback has passed."""
    if service.quiz_can_advance(state):
        return gr.Button(interactive=True), gr.Timer(active=False)
    return gr.skip(), gr.skip()


def resume_quiz(saved: dict[str, Any] | None, lang: str) -> tuple[Any, ...]:
    """After a reload, the quiz kept in the browser where it was; nothing when there is none (or it is damaged)."""
    state = (saved or {}).get("quiz")
    if not state:
        return tuple(gr.skip() for _ in range(10))
    try:
        return _quiz_outputs(service.quiz_resume(state, lang))
    except TeachingError:
        return tuple(gr.skip() for _ in range(10))
