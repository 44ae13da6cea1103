"""The web app: layout and event wiring only; everything it shows comes from `teaching.service`.

Run with `python app.py` (http://127.0.0.1:7860; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change where it listens).
Named endpoints for `gradio_client`: /explore (photo, group id[, method, backbone]) -> grid image (JPEG), top-5,
sentence; /gallery, /compare, /start_quiz, /quiz_answer, /quiz_next.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gradio as gr
from PIL import Image

from teaching import server, service
from teaching.errors import TeachingError

QUEUE_SIZE = 32  # requests waiting at most; more are refused with "the queue is full"
CLICK_JS = "() => (document.querySelector('#ID button') ?? document.querySelector('#ID'))?.click()"
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
    """The file path of an image input received without preprocessing (Gradio's FileData as a dict), opened only
    inside Gradio's upload cache or the gallery folders (a raw payload may name any path on the server)."""
    path = payload.get("path") if isinstance(payload, dict) else payload
    folders = [gr.utils.get_upload_folder(), *service.photo_dirs()]
    checked = service.allowed_photo(path, folders)
    return str(checked) if checked else None


@_user_errors
def explore(
    image: dict[str, Any] | None,
    group_id: str,
    method: str = "gradcam",
    backbone: str = service.DEFAULT_BACKBONE,
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
    try:
        result = service.compare(_path(image), methods, backbones, lambda f, desc: progress(f, desc=desc))
    finally:
        server.give_back_memory()  # a comparison frees hundreds of MB; hand them back to the system
    return str(service.save_jpeg(result.grid, "compare")), result.grid


def _quiz_outputs(step: service.QuizStep) -> tuple[Any, ...]:
    """The values of every quiz component for one step."""
    running = step.phase != "done"
    status = " ".join(t for t in (f"**{step.progress}**", step.message) if t)
    if step.seed is not None:
        status += f"\n\nQuiz seed: {step.seed} (the same seed gives a class the same test photos)"
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


@_user_errors
def start_quiz(group_id: str, n_teach: float, n_test: float, seed: str | None = None) -> tuple[Any, ...]:
    """A new quiz over the gallery photos of the group (a new draw at each start unless a seed is given)."""
    text = str(seed or "").strip()
    if text and not text.isdigit():
        raise TeachingError(f"the seed must be a whole number, got '{text[:20]}'")
    return _quiz_outputs(service.start_quiz(group_id, int(n_teach), int(n_test), int(text) if text else None))


def quiz_plan(group_id: str, n_teach: float, n_test: float) -> str:
    """Before a start: how many photos the quiz will use when the group has fewer than asked."""
    try:
        return service.quiz_plan(group_id, int(n_teach), int(n_test))
    except TeachingError:
        return ""


def choice_made(species_id: str | None) -> Any:
    """Answer is enabled once a species is chosen."""
    return gr.Button(interactive=bool(species_id))


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


def _png_download(button: gr.Button, shown: gr.State, file: gr.DownloadButton, prefix: str) -> None:
    """Encode the shown grid as PNG when the button is clicked, then click the hidden download button.

    An encode per explore would cost a fifth of the server's CPU for a file few learners download.
    """
    made = button.click(functools.partial(grid_png, prefix=prefix), shown, file, api_visibility="private")
    made.success(None, js=CLICK_JS.replace("ID", str(file.elem_id)))


def _explore_tab(demo: gr.Blocks, groups: list[tuple[str, str]], first: str, backbones: list[str]) -> None:
    """The Explore tab: a group, a photo (upload or gallery), method and model; the grid, the top-5, a download."""
    with gr.Row():
        with gr.Column(scale=2):
            group = gr.Dropdown(groups, value=first, label="Species group")
            photo = _photo_input("Photo: upload, webcam or paste, or pick one below", "photo")
            with gr.Row():
                method = gr.Dropdown(service.method_choices(service.EXPLORE_METHODS), value="gradcam", label="Method")
                backbone = gr.Dropdown(backbones, value=service.DEFAULT_BACKBONE, label="Model")
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
            grid = gr.Image(label="Maps per species", show_label=False, type="pil", format="jpeg", elem_id="grid")
            top5 = gr.Label(num_top_classes=service.TOP_N, label="Top-5 predictions (all 1000 classes)")
            download = gr.Button("Download the grid (PNG)", elem_id="download")
            download_file = gr.DownloadButton(visible="hidden", elem_id="download-file")
    paths = gr.State([])
    shown_grid = gr.State(None, time_to_live=STATE_TTL_S)

    gallery_outputs = [photos, credits, missing, paths]
    demo.load(show_gallery, group, gallery_outputs, api_name="gallery")
    group.change(show_gallery, group, gallery_outputs, api_visibility="private")
    photos.select(pick_photo, paths, photo, api_visibility="private")
    run.click(
        explore, [photo, group, method, backbone], [grid, top5, note, shown_grid], api_name="explore", preprocess=False
    )
    _png_download(download, shown_grid, download_file, "explore")


def _compare_tab(backbones: list[str]) -> None:
    """The Compare tab: a photo, methods and models; the matrix and its download."""
    gr.Markdown(service.SANITY_NOTE, elem_classes="note")
    with gr.Row():
        photo = _photo_input("Photo", "photo-compare")
        with gr.Column():
            methods = gr.CheckboxGroup(
                service.method_choices(service.COMPARE_METHODS),
                value=service.default_compare_methods(),
                label="Methods",
            )
            models = gr.CheckboxGroup(backbones, value=service.default_compare_backbones(), label="Models")
            run = gr.Button("Compare", variant="primary")
    matrix = gr.Image(label="Models x methods", show_label=False, type="pil", format="jpeg", elem_id="matrix")
    download = gr.Button("Download the matrix (PNG)", elem_id="download-compare")
    download_file = gr.DownloadButton(visible="hidden", elem_id="download-compare-file")
    shown_matrix = gr.State(None, time_to_live=STATE_TTL_S)

    run.click(compare, [photo, methods, models], [matrix, shown_matrix], api_name="compare", preprocess=False)
    _png_download(download, shown_matrix, download_file, "compare")


def _quiz_tab(groups: list[tuple[str, str]], first: str) -> None:
    """The Quiz tab: a group and the numbers of photos; then photo, answer, feedback, Next, and the score."""
    gr.Markdown(QUIZ_INTRO)
    with gr.Row():
        group = gr.Dropdown(groups, value=first, label="Species group")
        n_teach = gr.Slider(0, 12, value=6, step=1, label="Teaching photos")
        n_test = gr.Slider(1, 12, value=6, step=1, label="Test photos")
        seed = gr.Textbox("", label="Seed (optional: the same test for a class)", max_lines=1)
        start = gr.Button("Start the quiz", variant="primary")
    plan = gr.Markdown()
    status = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=2):
            photo = gr.Image(label="Which species is this?", interactive=False, height=340, visible=False)
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

    outputs = [state, status, photo, choice, answer, feedback, explanation, next_q, score, timer]
    start.click(start_quiz, [group, n_teach, n_test, seed], outputs, api_name="start_quiz")
    for control in (group, n_teach, n_test):
        control.change(quiz_plan, [group, n_teach, n_test], plan, api_visibility="private")
    choice.input(choice_made, choice, answer, api_visibility="private", show_progress="hidden")
    answer.click(quiz_answer, [state, choice], outputs, api_name="quiz_answer")
    next_q.click(quiz_next, state, outputs, api_name="quiz_next")
    timer.tick(enable_next, state, [next_q, timer], api_visibility="private", show_progress="hidden")


def build_demo() -> gr.Blocks:
    """The three tabs (Explore, Compare, Quiz) and their events."""
    groups = service.group_choices()
    first = service.default_group()
    backbones = service.available_backbones()
    # old uploads, results and gallery copies leave Gradio's cache (a classroom server runs for days); a page open
    # for longer than CACHE_SWEEP's age may lose its gallery thumbnails until it is reloaded
    with gr.Blocks(title="Machine teaching with Grad-CAM", delete_cache=CACHE_SWEEP) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Explore"):
            _explore_tab(demo, groups, first, backbones)
        with gr.Tab("Compare"):
            _compare_tab(backbones)
        with gr.Tab("Quiz"):
            _quiz_tab(groups, first)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=server.CONCURRENCY)
    return demo


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
    server.single_malloc_arena()
    server.configure_threads()
    service.download_galleries_in_background()
    service.warm_up()
    build_demo().launch(**launch_options())
