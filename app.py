"""The web app: layout and event wiring only; everything it shows comes from `teaching.service`.

Run with `python app.py` (http://127.0.0.1:7860; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change where it listens).
Named endpoints for `gradio_client`: /explain (photo, group id[, method, backbone]) -> grid image (JPEG), top-5,
sentence; /gallery, /compare, /start_quiz, /quiz_answer, /quiz_next.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import gradio as gr
import torch
from PIL import Image

from teaching import service
from teaching.errors import TeachingError
from teaching.models import DEFAULT_BACKBONE, OFFLINE_BACKBONES

QUEUE_SIZE = 32  # requests waiting at most; more are refused with "the queue is full"
CONCURRENCY = 2  # requests computed at the same time (the model is shared and thread-safe)
CLICK_JS = "() => (document.querySelector('#ID button') ?? document.querySelector('#ID'))?.click()"
M_ARENA_MAX = -8  # glibc's mallopt parameter number
STATE_TTL_S = 3600  # a session's last grid is kept this long for its PNG download
CACHE_SWEEP = (1800, 4 * 3600)  # every 30 minutes, delete cached files older than 4 hours (a school morning)
TICK_S = 0.5  # how often the quiz checks whether Next may be enabled
CSS = "#grid img, #matrix img { object-fit: contain; } .note { font-size: 0.95em; }"

INTRO = (
    "# Machine teaching with Grad-CAM\n"
    "Learn to tell look-alike species apart from where an ImageNet classifier looks. Pick a photo, compare the "
    "maps of the species side by side with the traits to check, then test yourself in the quiz."
)
QUIZ_INTRO = (
    "Guess first; then you see the answer, where the model finds the difference and the traits to check. "
    "After the teaching photos come test photos without feedback, and your score against chance."
)


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show the one-line message of a TeachingError in the page (a gr.Error) instead of a generic failure."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TeachingError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper


def _path(payload: dict[str, Any] | str | None) -> str | None:
    """The file path of an image input received without preprocessing (Gradio's FileData as a dict)."""
    if isinstance(payload, dict):
        return payload.get("path")
    return payload


@_user_errors
def explain(
    image: dict[str, Any] | None,
    group_id: str,
    method: str = "gradcam",
    backbone: str = DEFAULT_BACKBONE,
) -> tuple[str, dict[str, float], str, Image.Image]:
    """Explain a photo for every species of a group: the grid (JPEG), the top-5, a sentence, and the grid kept in
    the session for a PNG download."""
    result = service.explore(_path(image), group_id, method, backbone)
    if not result.trusted:
        gr.Warning(result.note)
    note = f"{result.note}\n\n*{result.caveat}*" if result.caveat else result.note
    return str(service.save_jpeg(result.grid, "explore")), result.labels, note, result.grid


def grid_png(grid: Image.Image | None, prefix: str) -> str:
    """The session's last grid as a PNG file, made only when the learner asks to download it."""
    if grid is None:
        raise gr.Error("Nothing to download yet: explain a photo first.", print_exception=False)
    return str(service.save_png(grid, prefix))


@_user_errors
def show_gallery(group_id: str) -> tuple[list[tuple[str, str]], str, str, list[str]]:
    """The gallery photos of a group with their credits, and what is missing."""
    view = service.gallery(group_id)
    photos = [(str(path), caption) for path, caption in view.photos]
    return photos, view.credits, view.missing, [p for p, _ in photos]


def pick_photo(paths: list[str], evt: gr.SelectData) -> str | None:
    """The gallery photo the learner clicked, as the photo to explain."""
    return paths[evt.index] if 0 <= evt.index < len(paths) else None


@_user_errors
def compare(
    image: dict[str, Any] | None,
    methods: list[str],
    backbones: list[str],
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (Gradio injects the tracker through the default)
) -> tuple[str, Image.Image]:
    """The matrix of methods x backbones (JPEG), and the same kept in the session for a PNG download."""
    result = service.compare(_path(image), methods, backbones, lambda f, desc: progress(f, desc=desc))
    return str(service.save_jpeg(result.grid, "compare")), result.grid


def _quiz_outputs(step: service.QuizStep) -> tuple[Any, ...]:
    """The values of every quiz component for one step."""
    running = step.phase != "done"
    return (
        step.state,
        f"**{step.progress}**",
        gr.Image(value=str(step.photo) if step.photo else None, visible=running),
        gr.Radio(choices=step.choices, value=None, interactive=running and not step.answered, visible=running),
        gr.Button(interactive=running and not step.answered, visible=running),
        step.feedback or "",
        gr.Image(value=step.explanation, visible=step.explanation is not None),
        gr.Button(interactive=False, visible=step.answered),
        step.score or "",
        gr.Timer(active=step.answered),
    )


@_user_errors
def start_quiz(group_id: str, n_teach: float, n_test: float) -> tuple[Any, ...]:
    """A new quiz over the gallery photos of the group."""
    return _quiz_outputs(service.start_quiz(group_id, int(n_teach), int(n_test)))


@_user_errors
def quiz_answer(state: dict[str, Any] | None, species_id: str | None) -> tuple[Any, ...]:
    """Record the learner's guess."""
    return _quiz_outputs(service.quiz_answer(state, species_id))


@_user_errors
def quiz_next(state: dict[str, Any] | None) -> tuple[Any, ...]:
    """The next photo after the feedback."""
    return _quiz_outputs(service.quiz_next(state))


def enable_next(state: dict[str, Any] | None) -> tuple[Any, Any]:
    """Enable Next (and stop the timer) once the pause after the feedback has passed."""
    if service.quiz_can_advance(state):
        return gr.Button(interactive=True), gr.Timer(active=False)
    return gr.skip(), gr.skip()


def _photo_input(label: str, elem_id: str) -> gr.Image:
    return gr.Image(
        label=label, sources=["upload", "webcam", "clipboard"], type="filepath", height=300, elem_id=elem_id
    )


def build_demo() -> gr.Blocks:
    """The three tabs (Explore, Compare, Quiz) and their events."""
    groups = service.group_choices()
    first = service.default_group()
    methods = service.method_choices(service.EXPLORE_METHODS)
    compare_methods = service.method_choices(service.COMPARE_METHODS)
    backbones = service.available_backbones()
    # old uploads, results and gallery copies leave Gradio's cache (a classroom server runs for days); a page open
    # for longer than CACHE_SWEEP's age may lose its gallery thumbnails until it is reloaded
    with gr.Blocks(title="Machine teaching with Grad-CAM", delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=2):
                    group = gr.Dropdown(groups, value=first, label="Species group")
                    photo = _photo_input("Photo: upload, webcam or paste, or pick one below", "photo")
                    with gr.Row():
                        method = gr.Dropdown(methods, value="gradcam", label="Method")
                        backbone = gr.Dropdown(backbones, value=DEFAULT_BACKBONE, label="Model")
                    run = gr.Button("Explain", variant="primary")
                    photos = gr.Gallery(
                        label="Photos of the group (click one)",
                        columns=4,
                        height=260,
                        allow_preview=False,
                        elem_id="gallery",
                    )
                    missing = gr.Markdown(elem_classes="note")
                    with gr.Accordion("Photo credits", open=False):
                        credits = gr.Markdown(elem_classes="note")
                with gr.Column(scale=3):
                    note = gr.Markdown()
                    grid = gr.Image(
                        label="Maps per species", show_label=False, type="pil", format="jpeg", elem_id="grid"
                    )
                    top5 = gr.Label(num_top_classes=service.TOP_N, label="Top-5 predictions (all 1000 classes)")
                    download = gr.Button("Download the grid (PNG)", elem_id="download")
                    download_file = gr.DownloadButton(visible="hidden", elem_id="download-file")
            paths = gr.State([])
            shown_grid = gr.State(None, time_to_live=STATE_TTL_S)
        with gr.Tab("Compare"):
            gr.Markdown(service.SANITY_NOTE, elem_classes="note")
            with gr.Row():
                photo_c = _photo_input("Photo", "photo-compare")
                with gr.Column():
                    methods_c = gr.CheckboxGroup(
                        compare_methods, value=service.default_compare_methods(), label="Methods"
                    )
                    backbones_c = gr.CheckboxGroup(backbones, value=list(OFFLINE_BACKBONES), label="Models")
                    run_c = gr.Button("Compare", variant="primary")
            matrix = gr.Image(label="Models x methods", show_label=False, type="pil", format="jpeg", elem_id="matrix")
            download_c = gr.Button("Download the matrix (PNG)", elem_id="download-compare")
            download_file_c = gr.DownloadButton(visible="hidden", elem_id="download-compare-file")
            shown_matrix = gr.State(None, time_to_live=STATE_TTL_S)
        with gr.Tab("Quiz"):
            gr.Markdown(QUIZ_INTRO)
            with gr.Row():
                group_q = gr.Dropdown(groups, value=first, label="Species group")
                n_teach = gr.Slider(0, 12, value=6, step=1, label="Teaching photos")
                n_test = gr.Slider(1, 12, value=6, step=1, label="Test photos")
                start = gr.Button("Start the quiz", variant="primary")
            status = gr.Markdown()
            with gr.Row():
                with gr.Column(scale=2):
                    photo_q = gr.Image(label="Which species is this?", interactive=False, height=340, visible=False)
                    choice = gr.Radio([], label="Your answer", visible=False)
                    answer = gr.Button("Answer", variant="primary", visible=False)
                with gr.Column(scale=3):
                    feedback = gr.Markdown()
                    explanation = gr.Image(
                        label="Where the difference is",
                        show_label=False,
                        interactive=False,
                        visible=False,
                        elem_id="explanation",
                    )
                    next_q = gr.Button("Next", interactive=False, visible=False)
            score = gr.Markdown()
            state = gr.State(None)
            timer = gr.Timer(TICK_S, active=False)

        gallery_outputs = [photos, credits, missing, paths]
        demo.load(show_gallery, group, gallery_outputs, api_name="gallery")
        group.change(show_gallery, group, gallery_outputs, api_visibility="private")
        photos.select(pick_photo, paths, photo, api_visibility="private")
        run.click(
            explain,
            [photo, group, method, backbone],
            [grid, top5, note, shown_grid],
            api_name="explain",
            preprocess=False,
        )
        run_c.click(
            compare, [photo_c, methods_c, backbones_c], [matrix, shown_matrix], api_name="compare", preprocess=False
        )
        # the PNG is encoded when asked for, then the hidden download button is clicked (an encode per explain
        # would cost a fifth of the server's CPU for a file few learners download)
        for button, state, file, prefix in (
            (download, shown_grid, download_file, "explore"),
            (download_c, shown_matrix, download_file_c, "compare"),
        ):
            made = button.click(functools.partial(grid_png, prefix=prefix), state, file, api_visibility="private")
            made.success(None, js=CLICK_JS.replace("ID", str(file.elem_id)))
        quiz_outputs = [state, status, photo_q, choice, answer, feedback, explanation, next_q, score, timer]
        start.click(start_quiz, [group_q, n_teach, n_test], quiz_outputs, api_name="start_quiz")
        answer.click(quiz_answer, [state, choice], quiz_outputs, api_name="quiz_answer")
        next_q.click(quiz_next, state, quiz_outputs, api_name="quiz_next")
        timer.tick(enable_next, state, [next_q, timer], api_visibility="private", show_progress="hidden")
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
    return demo


def configure_threads() -> int:
    """Give each of the CONCURRENCY requests its share of the CPU cores for torch, unless OMP_NUM_THREADS is set.

    torch's default is a thread per core for every request at once: two requests on two cores then run four
    compute threads. One thread per request measured 9% less CPU per request and p50 308 vs 349 ms with 4 clients
    (docs/PERFORMANCE.md). Returns the number of threads set (0 when left alone).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return 0
    threads = max(1, (os.cpu_count() or 1) // CONCURRENCY)
    torch.set_num_threads(threads)
    return threads


def single_malloc_arena() -> bool:
    """Have glibc's malloc use one arena for all threads (unless MALLOC_ARENA_MAX is set); True when set.

    glibc gives threads that allocate at the same time their own arenas (up to 8 per core), and Gradio computes
    requests on a pool of worker threads: under 4 clients the server's resident set climbed by 35-57 MB over its
    first 150 requests to a plateau near 1,010 MB. With one arena it stays near 940 MB (+13 MB) at the same
    throughput (docs/PERFORMANCE.md). Call it before the server's threads start.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 1))
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False


def launch_options() -> dict[str, Any]:
    """The settings `launch()` needs besides where to listen: upload limit, photo folders, theme and style."""
    return {
        "max_file_size": service.MAX_UPLOAD_BYTES,
        "allowed_paths": [str(p) for p in service.photo_dirs()],
        "theme": gr.themes.Soft(),
        "css": CSS,
        "ssr_mode": False,
    }


if __name__ == "__main__":
    single_malloc_arena()
    configure_threads()
    service.download_galleries_in_background()
    service.warm_up()
    build_demo().launch(**launch_options())
