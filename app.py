"""The web app: layout and event wiring only; everything it shows comes from `teaching.service`.

Run with `python app.py` (http://127.0.0.1:7860; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change where it listens).
Named endpoints for `gradio_client`: /explore (photo, group id[, method, backbone]) -> grid image (JPEG), top-5,
sentence; /gallery, /compare, /start_quiz, /quiz_answer, /quiz_next.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import gradio as gr
from PIL import Image

import app_page
from app_quiz import (
    TICK_S,
    choice_made,
    enable_next,
    quiz_answer,
    quiz_next,
    quiz_plan,
    resume_quiz,
    start_quiz,
    user_errors,
)
from teaching import server, service
from teaching.errors import TeachingError

QUEUE_SIZE = 32  # requests waiting at most; more are refused with "the queue is full"
CLICK_JS = "() => (document.querySelector('#ID button') ?? document.querySelector('#ID'))?.click()"
STATE_TTL_S = 3600  # a session's last grid is kept this long for its PNG download
CACHE_SWEEP = (1800, 4 * 3600)  # every 30 minutes, delete cached files older than 4 hours (a school morning)
# tools for assistants, /explore ("explain this photo for this species group") and /groups, when the `mcp` package of
# the gradio[mcp] extra (requirements.txt) is installed
MCP = importlib.util.find_spec("mcp") is not None
I18N = gr.I18n(**app_page.translations())
T = I18N  # T("key"): a string of the page, translated in the browser (English or Simplified Chinese)


def _path(payload: dict[str, Any] | str | None) -> str | None:
    """The file path of an image input received without preprocessing (Gradio's FileData as a dict), opened only
    inside Gradio's upload cache or the gallery folders (a raw payload may name any path on the server)."""
    path = payload.get("path") if isinstance(payload, dict) else payload
    folders = [str(gr.utils.get_upload_folder()), *map(str, service.photo_dirs())]
    checked = service.allowed_photo(path, folders)
    return str(checked) if checked else None


@user_errors
def explore(
    image: dict[str, Any] | None,
    group_id: str,
    method: str = "gradcam",
    backbone: str = service.DEFAULT_BACKBONE,
) -> tuple[str, dict[str, float], str]:
    """Explain a photo for one species group: where an ImageNet classifier looks for each species of the group.

    Args:
        image: the photo (JPEG, PNG, WebP, GIF, BMP or TIFF, up to 20 MB).
        group_id: the species group: "elephants", "sharks" or "butterflies" (see /groups).
        method: the saliency method, default "gradcam".
        backbone: the classifier, default "efficientnet_lite0".

    Returns:
        The path of a JPEG grid (one column per species: where the model looks, why this species rather than the
        others, the trait sentences), the model's top-5 over the 1000 ImageNet classes as {label, confidences},
        and one English sentence on what the model says (with the group's caveat when it has one).
    """
    result = service.explore(_path(image), group_id, method, backbone)
    note = f"{result.note}\n\n*{result.caveat}*" if result.caveat else result.note
    return str(service.save_jpeg(result.grid, "explore")), result.labels, note


def explore_page(
    image: dict[str, Any] | None,
    group_id: str,
    method: str,
    backbone: str,
    lang: str,
    species_id: str | None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (Gradio injects the tracker through the default)
) -> tuple[str, Any, str, Image.Image | None]:
    """The Explore page: the species cards, the top-5, the sentence, and the grid kept for a PNG download.

    A bad photo clears the previous result and says why in one line (no error badges over old content)."""
    try:
        result = service.explore(
            _path(image), group_id, method, backbone, lang, species_id, lambda f, d: progress(f, desc=d)
        )
    except TeachingError as exc:
        return "", gr.Label(value=None), f"**{exc}**", None
    return app_page.cards_html(result), result.labels, result.note, result.grid


def grid_png(grid: Image.Image | None, prefix: str) -> str:
    """The session's last grid as a PNG file, made only when the learner asks to download it."""
    if grid is None:
        raise gr.Error("Nothing to download yet: explain a photo first.", print_exception=False)
    return str(service.save_png(grid, prefix))


@user_errors
def show_gallery(group_id: str) -> tuple[list[tuple[str, str]], str, str, list[str]]:
    """The gallery photos of a group with their credits, and what is missing."""
    view = service.gallery(group_id)
    photos = [(str(path), caption) for path, caption in view.photos]
    return photos, view.credits, view.missing, [p for p, _ in photos]


def gallery_page(group_id: str, lang: str) -> tuple[list[tuple[str, str]], str, str, list[tuple[str, str]]]:
    """The gallery for the page: photos, credits, one short line on what is missing, (path, species) per photo."""
    try:
        view = service.gallery(group_id, lang)
    except TeachingError as exc:
        return [], "", str(exc), []
    photos = [(str(path), caption) for path, caption in view.photos]
    species = [(path, s) for (path, _), s in zip(photos, view.species, strict=True)]
    return photos, view.credits, view.short, species


def pick_photo(paths: list[Any], evt: gr.SelectData) -> tuple[str | None, str | None]:
    """The gallery photo the learner clicked, as the photo to explain, and its species."""
    if not 0 <= evt.index < len(paths):
        return None, None
    item = paths[evt.index]
    return (item[0], item[1]) if isinstance(item, list | tuple) else (item, None)


def compare(
    image: dict[str, Any] | None,
    methods: list[str],
    backbones: list[str],
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (Gradio injects the tracker through the default)
) -> tuple[str, Image.Image]:
    """The matrix of methods x backbones (JPEG), and the same kept in the session for a PNG download."""
    return compare_page(image, methods, backbones, "en", progress)


@user_errors
def compare_page(
    image: dict[str, Any] | None,
    methods: list[str],
    backbones: list[str],
    lang: str,
    progress: gr.Progress = gr.Progress(),  # noqa: B008  (Gradio injects the tracker through the default)
) -> tuple[str, Image.Image]:
    """The page's comparison, its labels in the page's language."""
    try:
        result = service.compare(_path(image), methods, backbones, lambda f, d: progress(f, desc=d), lang=lang)
    finally:
        server.give_back_memory()  # a comparison frees hundreds of MB; hand them back to the system
    return str(service.save_jpeg(result.grid, "compare")), result.grid


def _method_choices(names: tuple[str, ...]) -> list[tuple[Any, str]]:
    """The methods to choose from, each named in the page's language ("Score-CAM (slow without a GPU)")."""
    return [(T(app_page.method_key(m)), m) for _, m in service.method_choices(names)]


def _photo_input(label: Any, elem_id: str) -> gr.Image:
    return gr.Image(
        label=label,
        sources=["upload", "webcam", "clipboard"],
        type="filepath",
        height=300,
        elem_id=elem_id,
        buttons=[],
    )


def _png_download(button: gr.Button, shown: gr.State, file: gr.DownloadButton, prefix: str) -> None:
    """Encode the shown grid as PNG when the button is clicked, then click the hidden download button.

    An encode per explore would cost a fifth of the server's CPU for a file few learners download.
    """
    made = button.click(functools.partial(grid_png, prefix=prefix), shown, file, api_visibility="private")
    made.success(None, js=CLICK_JS.replace("ID", str(file.elem_id)))


def _explore_tab(
    demo: gr.Blocks, groups: list[tuple[str, str]], first: str, backbones: list[str], lang: gr.State
) -> tuple[gr.Dropdown, gr.Image]:
    """The Explore tab: a group, a photo (upload or gallery), method and model; the species cards, the top-5, a
    download, and a cancel for the slow methods. Returns the group dropdown (its choice is kept in the browser) and
    the photo input."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=300):
            group = gr.Dropdown(groups, value=first, label=T("group"), elem_id="group")
            photo = _photo_input(T("photo"), "photo")
            with gr.Row():
                method = gr.Dropdown(
                    _method_choices(service.EXPLORE_METHODS),
                    value="gradcam",
                    label=T("method"),
                    min_width=160,
                    elem_id="method",
                )
                backbone = gr.Dropdown(
                    backbones, value=service.DEFAULT_BACKBONE, label=T("model"), min_width=200, elem_id="model"
                )
            with gr.Row():
                run = gr.Button(T("explain"), variant="primary", elem_id="explain")
                cancel = gr.Button(T("cancel"), variant="stop", elem_id="cancel-explore")
            photos = gr.Gallery(
                label=T("gallery"),
                columns=4,
                height=260,
                allow_preview=False,
                elem_id="gallery",
                buttons=[],
            )
            missing = gr.Markdown(elem_classes="note", elem_id="missing")
            with gr.Accordion(T("credits"), open=False):
                credits = gr.Markdown(elem_classes="note", elem_id="credits")
        with gr.Column(scale=3, min_width=300):
            note = gr.Markdown(elem_id="note")
            cards = gr.HTML(elem_id="cards")
            top5 = gr.Label(num_top_classes=service.TOP_N, label=T("top5"), elem_id="top5")
            download = gr.Button(T("download"), elem_id="download")
            download_file = gr.DownloadButton(visible="hidden", elem_id="download-file")
    paths = gr.State([])
    species = gr.State(None)  # the species of a gallery photo (None for an upload)
    shown_grid = gr.State(None, time_to_live=STATE_TTL_S)
    # the named API endpoint (and MCP tool) /explore: the grid as one JPEG, the top-5, one English sentence
    api_grid = gr.Image(visible=False, type="filepath", format="jpeg")
    api_top5 = gr.Label(visible=False)
    api_note = gr.Markdown(visible=False)
    api_run = gr.Button(visible=False)

    gallery_outputs = [photos, credits, missing, paths]
    demo.load(gallery_page, [group, lang], gallery_outputs, api_visibility="private")
    group.change(gallery_page, [group, lang], gallery_outputs, api_visibility="private")
    lang.change(gallery_page, [group, lang], gallery_outputs, api_visibility="private")
    photos.select(pick_photo, paths, [photo, species], api_visibility="private")
    photo.upload(lambda: None, None, species, api_visibility="private")
    photo.clear(lambda: None, None, species, api_visibility="private")
    job = run.click(
        explore_page,
        [photo, group, method, backbone, lang, species],
        [cards, top5, note, shown_grid],
        api_visibility="private",
        preprocess=False,
        concurrency_id="engine",
    )
    cancel.click(None, None, None, cancels=[job], api_visibility="private")
    api_run.click(
        explore, [photo, group, method, backbone], [api_grid, api_top5, api_note], api_name="explore", preprocess=False
    )
    api_gallery = gr.Button(visible=False)
    api_gallery.click(show_gallery, group, [photos, credits, missing, paths], api_name="gallery")
    _png_download(download, shown_grid, download_file, "explore")
    return group, photo


def _compare_tab(backbones: list[str], lang: gr.State) -> gr.Image:
    """The Compare tab: a photo, methods and models; the matrix, its download, and a cancel."""
    gr.Markdown(T("sanity_note"), elem_classes="note", elem_id="sanity-note")
    with gr.Row():
        photo = _photo_input(T("photo_compare"), "photo-compare")
        with gr.Column():
            methods = gr.CheckboxGroup(
                _method_choices(service.COMPARE_METHODS),
                value=service.default_compare_methods(),
                label=T("methods"),
            )
            models = gr.CheckboxGroup(backbones, value=service.default_compare_backbones(), label=T("models"))
            with gr.Row():
                run = gr.Button(T("run_compare"), variant="primary", elem_id="compare")
                cancel = gr.Button(T("cancel"), variant="stop", elem_id="cancel-compare")
    matrix = gr.Image(label=T("matrix"), show_label=False, type="pil", format="jpeg", elem_id="matrix", buttons=[])
    download = gr.Button(T("download_matrix"), elem_id="download-compare")
    download_file = gr.DownloadButton(visible="hidden", elem_id="download-compare-file")
    shown_matrix = gr.State(None, time_to_live=STATE_TTL_S)

    job = run.click(
        compare_page, [photo, methods, models, lang], [matrix, shown_matrix], api_visibility="private", preprocess=False
    )
    api_run = gr.Button(visible=False)
    api_run.click(compare, [photo, methods, models], [matrix, shown_matrix], api_name="compare", preprocess=False)
    cancel.click(None, None, None, cancels=[job], api_visibility="private")
    _png_download(download, shown_matrix, download_file, "compare")
    return photo


def _quiz_tab(
    groups: list[tuple[str, str]], first: str, saved: gr.BrowserState, lang: gr.State
) -> tuple[gr.Dropdown, list[Any]]:
    """The Quiz tab: a group and the numbers of photos; then photo, answer, feedback, Next, and the score.

    The quiz state is also kept in the browser (`saved`), so a reload in the middle of a quiz goes on where it was."""
    gr.Markdown(T("quiz_intro"))
    with gr.Row():
        group = gr.Dropdown(groups, value=first, label=T("group"), min_width=160)
        n_teach = gr.Slider(0, 12, value=6, step=1, label=T("teach_n"), min_width=160, elem_classes="quiz-size")
        n_test = gr.Slider(1, 12, value=6, step=1, label=T("test_n"), min_width=160, elem_classes="quiz-size")
        seed = gr.Textbox("", label=T("seed"), max_lines=1, min_width=160)
        start = gr.Button(T("start"), variant="primary", min_width=160)
    plan = gr.Markdown()
    status = gr.Markdown(elem_id="quiz-status")
    with gr.Row():
        with gr.Column(scale=2, min_width=300):
            photo = gr.Image(
                label=T("which"), interactive=False, height=340, visible=False, buttons=[], elem_id="quiz-photo"
            )
            choice = gr.Radio([], label=T("answer_label"), visible=False)
            answer = gr.Button(T("answer"), variant="primary", visible=False)
        with gr.Column(scale=3, min_width=300):
            feedback = gr.Markdown()
            explanation = gr.Image(
                label="Where the difference is",
                show_label=False,
                interactive=False,
                visible=False,
                elem_id="explanation",
                buttons=[],
            )
            next_q = gr.Button(T("next"), interactive=False, visible=False)
    score = gr.Markdown()
    state = gr.State(None)
    timer = gr.Timer(TICK_S, active=False)

    outputs = [state, status, photo, choice, answer, feedback, explanation, next_q, score, timer]
    keep = {"fn": app_page.keep_quiz, "inputs": [saved, state], "outputs": saved, "api_visibility": "private"}
    start.click(start_quiz, [group, n_teach, n_test, seed, lang], outputs, api_name="start_quiz").success(**keep)
    for control in (group, n_teach, n_test):
        control.change(quiz_plan, [group, n_teach, n_test, lang], plan, api_visibility="private")
    choice.input(choice_made, choice, answer, api_visibility="private", show_progress="hidden")
    answer.click(quiz_answer, [state, choice, lang], outputs, api_name="quiz_answer").success(**keep)
    next_q.click(quiz_next, [state, lang], outputs, api_name="quiz_next").success(**keep)
    timer.tick(enable_next, state, [next_q, timer], api_visibility="private", show_progress="hidden")
    return group, outputs


def build_demo() -> gr.Blocks:
    """The three tabs (Explore, Compare, Quiz) and their events; the language, the chosen group and the quiz are
    kept in the browser (`gr.BrowserState`), so a reload keeps them."""
    groups = service.group_choices()
    first = service.default_group()
    backbones = service.available_backbones()
    # old uploads, results and gallery copies leave Gradio's cache (a classroom server runs for days); a page open
    # for longer than CACHE_SWEEP's age may lose its gallery thumbnails until it is reloaded
    with gr.Blocks(title="Machine teaching with Grad-CAM", delete_cache=CACHE_SWEEP) as demo:
        saved = gr.BrowserState({"group": None, "quiz": None}, storage_key="teaching-page")
        lang = gr.State("en")
        locale, browser = gr.Textbox(visible=False), gr.Textbox(visible=False)  # the page's and the browser's
        redraw = gr.State(False)  # the language differs from the one Gradio drew the page in
        with gr.Row(equal_height=False):
            gr.Markdown(T("title_md"), elem_id="title")
            switch = gr.Radio(
                [("English", "en"), ("中文", "zh")],
                value=None,
                label=T("language"),
                elem_id="lang",
                scale=0,
                min_width=240,
            )
        gr.Markdown(T("intro"))
        with gr.Tab(T("explore"), id="explore") as explore_tab:
            explore_group, explore_photo = _explore_tab(demo, groups, first, backbones, lang)
        with gr.Tab(T("compare"), id="compare") as compare_tab:
            compare_photo = _compare_tab(backbones, lang)
        with gr.Tab(T("quiz"), id="quiz") as quiz_tab:
            quiz_group, quiz_outputs = _quiz_tab(groups, first, saved, lang)
        group_outputs = [lang, switch, explore_group, quiz_group, explore_tab, compare_tab, quiz_tab, redraw]
        loaded = demo.load(
            page_language, [locale, saved, browser], group_outputs, js=app_page.LOCALE_JS, api_visibility="private"
        )
        loaded.then(resume_quiz, [saved, lang], quiz_outputs, api_visibility="private", show_progress="hidden")
        gr.api(app_page.list_groups, api_name="groups")
        switched = switch.input(
            page_language, [switch, saved], group_outputs, js=app_page.SWITCH_JS, api_visibility="private"
        )
        for event in (loaded, switched):  # Gradio writes an upload area's words when it is drawn: draw them again
            private = {"api_visibility": "private", "show_progress": "hidden"}
            photos = [explore_photo, compare_photo]
            event.then(functools.partial(_photos_shown, shown=False), redraw, photos, **private).then(
                functools.partial(_photos_shown, shown=True), redraw, photos, **private
            )
        for dropdown in (explore_group, quiz_group):
            dropdown.input(app_page.keep_group, [saved, dropdown], saved, api_visibility="private")
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=server.CONCURRENCY)
    return demo


def _photos_shown(redraw: bool, shown: bool) -> list[Any]:
    """The two photo inputs hidden or shown again when the page's language changed (else left alone): drawn again,
    they write Gradio's words of their upload area in the new locale."""
    return [gr.update(visible=shown) if redraw else gr.update()] * 2


def page_language(locale: str, saved: dict[str, Any] | None, browser: str | None = None) -> tuple[Any, ...]:
    """The page's language from the browser's locale (or the page's switch), and the group kept in the browser.

    The tabs are sent again with their labels: Gradio translates a tab's name when it builds the tabs, and again
    only when the tab is updated (the browser's locale has been set by LOCALE_JS or SWITCH_JS by then). The last
    value says whether the upload areas must be drawn again: after the switch (no `browser`), or on load when the
    language kept in the browser is not the browser's own."""
    lang = app_page.lang_of(locale)
    choices = service.group_choices(lang)
    group = (saved or {}).get("group")
    value = group if group in dict((v, k) for k, v in choices) else service.default_group()
    tabs = [gr.update(label=T(key)) for key in ("explore", "compare", "quiz")]
    redraw = browser is None or app_page.lang_of(browser) != lang
    dropdowns = gr.Dropdown(choices=choices, value=value), gr.Dropdown(choices=choices, value=value)
    return lang, lang, *dropdowns, *tabs, redraw


def launch_options() -> dict[str, Any]:
    """The settings `launch()` needs besides where to listen: upload limit, photo folders, theme and style."""
    return {
        "max_file_size": service.MAX_UPLOAD_BYTES,
        "allowed_paths": [str(p) for p in service.photo_dirs()],
        "theme": gr.themes.Soft(),
        "css": app_page.CSS,
        "i18n": I18N,
        "mcp_server": MCP,
        "ssr_mode": False,
    }


if __name__ == "__main__":
    server.single_malloc_arena()
    server.configure_threads()
    service.download_galleries_in_background()
    service.warm_up()
    build_demo().launch(**launch_options())
