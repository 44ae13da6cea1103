"""The page's own HTML and words for app.py: the species cards, the colour bar, the style, and the English and
Simplified Chinese strings of every label (Gradio's `gr.I18n`). No engine code: it formats what the service returns.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from PIL import Image

from teaching import service

LANG_KEY = "teaching-lang"  # localStorage key of the language chosen in the page ("en" or "zh-CN")
# Gradio 6.31 picks its locale once, from navigator.language, before the page's own scripts run; the page's choice
# is applied through the locale store that Gradio's own settings menu uses (`changeLocale` of its core module, found
# among the page's loaded scripts), and awaited until svelte-i18n has loaded it (it then sets <html lang>). The tab
# names are translated when the tabs are built, so page_language also sends the tabs again (a label update).
_SET_LOCALE = (
    "async (l) => { const core = performance.getEntriesByType('resource').map((r) => r.name)"
    ".find((n) => /\\/assets\\/core-[\\w-]+\\.js$/.test(n)); if (!core) return; "
    "try { (await import(core)).changeLocale(l); } catch (e) { return; } "
    "for (let i = 0; i < 40 && document.documentElement.lang !== l; i++) await new Promise((r) => setTimeout(r, 50)); }"
)
# The page's switch stores the choice in the browser and turns Gradio's labels too; the sentences, names and traits
# follow the language that the switch's event returns.
SWITCH_JS = (
    "async (lang, saved) => { const l = lang === 'zh' ? 'zh-CN' : 'en'; "
    f"try {{ localStorage.setItem('{LANG_KEY}', l); }} catch (e) {{}} "
    f"await ({_SET_LOCALE})(l); return [lang, saved]; }}"
)
# On load: the language kept in the browser (then Gradio's labels are turned to it), else the browser's locale; and
# the browser's own locale (the one Gradio drew the page in).
LOCALE_JS = (
    "async (locale, saved, browser) => { const own = navigator.language || 'en'; let l = null; "
    f"try {{ l = localStorage.getItem('{LANG_KEY}'); }} catch (e) {{}} "
    f"if (l) await ({_SET_LOCALE})(l); return [l || own, saved, own]; }}"
)

CSS = """
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 240px), 1fr)); gap: 12px; }
.card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px; min-width: 0; }
.card h3 { margin: 0 0 4px; font-size: 1.05em; overflow-wrap: anywhere; }
.card .prob { font-weight: 600; }
.card .imagenet { color: var(--body-text-color-subdued); font-size: 0.85em; }
.card figure { margin: 4px 0; }
.card figcaption { font-size: 0.8em; color: var(--body-text-color-subdued); }
.card img { width: 100%; height: auto; display: block; border-radius: 4px; }
.card ul { margin: 4px 0 0; padding-left: 1.2em; font-size: 0.92em; }
.card .empty { font-style: italic; font-size: 0.9em; }
.colourbar { height: 12px; border-radius: 3px; margin: 8px 0 2px;
  background: linear-gradient(to right,
    #00007f, #0000ff, #007fff, #00ffff, #7fff7f, #ffff00, #ff7f00, #ff0000, #7f0000); }
.scale { font-size: 0.85em; }
.photo-note { font-weight: 600; }
.note { font-size: 0.95em; }
#grid img, #matrix img { object-fit: contain; }
body, .gradio-container { overflow-x: hidden; }
.gradio-container { max-width: 100% !important; }
ol li, .note li { overflow-wrap: anywhere; }
@media (max-width: 700px) {  /* on a phone the Compare matrix keeps a readable size and scrolls in its own box */
  #matrix { overflow-x: auto; }
  #matrix * { overflow: visible; justify-content: flex-start !important; align-items: flex-start !important; }
  #matrix img { width: 900px; min-width: 900px; max-width: none; height: auto; max-height: none; }
}
#credits ol { padding-left: 2.6em; list-style-position: outside; }
#lang .wrap { flex-wrap: nowrap; }
.quiz-size .head { flex-wrap: wrap; }  /* a narrow slider puts its number under its label, not the label in a column */
.quiz-size .head label { min-width: max-content; }
#title { min-width: min(100%, 320px) !important; }  /* on a phone the language switch goes under the title */
#model input, #model .wrap { min-width: 0; text-overflow: ellipsis; }
#photo [data-testid="block-label"] { max-width: calc(100% - 44px); white-space: normal; }  /* clear of the x button */
"""


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def cards_html(result: service.ExploreResult) -> str:
    """The species as cards that wrap (one column on a phone): name, probability, the two maps, the traits."""
    e = html.escape
    parts = []
    if result.photo_note:
        parts.append(f'<p class="photo-note">{e(result.photo_note)}</p>')
    parts.append('<div class="cards">')
    for card in result.cards:
        english = result.lang == "en" and card.imagenet_name != card.name  # ImageNet's names are English only
        imagenet = f' <span class="imagenet">({e(card.imagenet_name)})</span>' if english else ""
        traits = "".join(f"<li>{e(t)}</li>" for t in card.traits)
        empty = f'<p class="empty">{e(card.empty)}</p>' if card.empty else ""
        parts.append(
            f'<section class="card" data-species="{e(card.species_id)}">'
            f'<h3>{e(card.name)}{imagenet} <span class="prob">{e(service.percent(card.probability))}</span></h3>'
            f'<figure><img src="{_data_uri(card.plain)}" alt="{e(result.row_labels[0])}: {e(card.name)}">'
            f"<figcaption>{e(result.row_labels[0])}</figcaption></figure>"
            f'<figure><img src="{_data_uri(card.contrast)}" alt="{e(result.row_labels[1])}: {e(card.name)}">'
            f"<figcaption>{e(result.row_labels[1])}</figcaption></figure>"
            f"{empty}<ul>{traits}</ul></section>"
        )
    parts.append("</div>")
    parts.append(f'<div class="colourbar" role="img" aria-label="{e(result.scale)}"></div>')
    parts.append(f'<p class="scale">{e(result.scale)}</p>')
    if result.caveat:
        parts.append(f'<p class="note"><em>{e(result.caveat)}</em></p>')
    return "".join(parts)


EN: dict[str, str] = {
    "title_md": "# Machine teaching with Grad-CAM",
    "intro": "Learn to tell look-alike species apart from where an ImageNet classifier looks. Pick a photo, compare "
    "the maps of the species side by side with the traits to check, then test yourself in the quiz.",
    "quiz_intro": "Guess first; then you see the answer, where the model finds the difference and the traits to "
    "check. After the teaching photos come test photos without feedback, and your score against chance.",
    "language": "Language",
    "explore": "Explore",
    "compare": "Compare",
    "quiz": "Quiz",
    "group": "Species group",
    "photo": "Photo: upload, webcam or paste, or pick one below",
    "photo_compare": "Photo",
    "method": "Method",
    "model": "Model",
    "explain": "Explain",
    "cancel": "Cancel",
    "gallery": "Photos of the group (click one)",
    "credits": "Photo credits",
    "top5": "Top-5 predictions (all 1000 classes)",
    "download": "Download the grid (PNG)",
    "download_matrix": "Download the matrix (PNG)",
    "methods": "Methods",
    "models": "Models",
    "matrix": "Models x methods",
    "run_compare": "Compare",
    "teach_n": "Teaching photos",
    "test_n": "Test photos",
    "start": "Start the quiz",
    "seed": "Seed (optional: the same test for a class)",
    "which": "Which species is this?",
    "answer_label": "Your answer",
    "answer": "Answer",
    "next": "Next",
}

ZH: dict[str, str] = {
    "title_md": "# 用 Grad-CAM 进行机器教学",
    "intro": "从 ImageNet 分类模型关注的位置，学会区分外形相似的物种。选一张照片，对照各物种的热力图和要核对的特征，"
    "然后在测验中检验自己。",
    "quiz_intro": "先猜；然后你会看到答案、模型找到差别的位置和要核对的特征。教学照片之后是没有反馈的测试照片，"
    "最后给出你的得分和随机猜测的对比。",
    "language": "语言",
    "explore": "探索",
    "compare": "比较",
    "quiz": "测验",
    "group": "物种组",
    "photo": "照片：上传、拍照或粘贴，或在下方选一张",
    "photo_compare": "照片",
    "method": "方法",
    "model": "模型",
    "explain": "解释",
    "cancel": "取消",
    "gallery": "本组的照片（点击一张）",
    "credits": "照片来源",
    "top5": "前 5 个预测（全部 1000 类）",
    "download": "下载网格图（PNG）",
    "download_matrix": "下载矩阵图（PNG）",
    "methods": "方法",
    "models": "模型",
    "matrix": "模型 × 方法",
    "run_compare": "比较",
    "teach_n": "教学照片数",
    "test_n": "测试照片数",
    "start": "开始测验",
    "seed": "种子（可选：全班用同一组测试照片）",
    "which": "这是哪个物种？",
    "answer_label": "你的答案",
    "answer": "回答",
    "next": "下一张",
}


def translations() -> dict[str, Any]:
    """The keyword arguments of `gr.I18n`: English and Simplified Chinese (also for the bare "zh" locale).

    Besides the labels above: the sentences the page shows before any request (Compare's note) and the method
    names of the choices, from the service's one table of sentences (`service.say`)."""
    out = {}
    for lang, table in (("en", EN), ("zh", ZH)):
        methods = service.method_choices(sorted({*service.EXPLORE_METHODS, *service.COMPARE_METHODS}), lang)
        out[lang] = {**table, "sanity_note": service.say("sanity_note", lang)}
        out[lang].update({method_key(m): name for name, m in methods})
    return {"en": out["en"], "zh-CN": out["zh"], "zh": out["zh"]}


def method_key(method: str) -> str:
    """The `gr.I18n` key of a method's name in the choices ("method.scorecam")."""
    return f"method.{method}"


def lang_of(locale: str | None) -> str:
    """The page's language ("en" or "zh") for a browser locale such as "zh-CN" or "en-US"."""
    return "zh" if (locale or "").lower().startswith("zh") else "en"


def list_groups() -> list[dict[str, Any]]:
    """The species groups an assistant can explain photos for.

    Returns:
        One dict per group: "id" (pass it to /explore as group_id), "title", "intro", and "species", a list of
        {"id", "name", "traits"} (the trait sentences a learner can check on a photo).
    """
    return [
        {
            "id": g.id,
            "title": g.title,
            "intro": g.intro,
            "species": [{"id": s.id, "name": s.name, "traits": list(s.traits)} for s in g.species],
        }
        for g in service.groups().values()
    ]


def keep_group(saved: dict[str, Any] | None, group: str) -> dict[str, Any]:
    """The browser's saved page with the chosen group."""
    return {**(saved or {}), "group": group}


def keep_quiz(saved: dict[str, Any] | None, state: dict[str, Any] | None) -> dict[str, Any]:
    """The browser's saved page with the quiz as it is now."""
    return {**(saved or {}), "quiz": state}
