"""How the pages write numbers and sentences, in English ("en") or Simplified Chinese ("zh")."""

from __future__ import annotations

from typing import Any

from teaching.render import SCALE_WORDS, can_draw

LANGS = ("en", "zh")  # the languages the pages speak; the CLI and the Python API default to English

MESSAGES: dict[str, dict[str, str]] = {
    "outside": {
        "en": "The model does not see any of the {group} here: its best guess is {name} ({p}). The maps show where "
        "it would look for each species anyway; do not learn the traits from them.",
        "zh": "模型在这里没有看到任何一种{group}：它最可能的猜测是 {name}（{p}）。"
        "热力图仍然显示它会在哪里寻找每个物种，但不要从中学习特征。",
    },
    "unsure": {
        "en": "The model is unsure: its best guess, {name}, gets only {p}. Read the maps with care and check the "
        "traits yourself.",
        "zh": "模型拿不准：它最可能的猜测是{name}，但只有 {p}。请谨慎看待热力图，自己核对特征。",
    },
    "says": {"en": "The model says {name} ({p}).", "zh": "模型认为这是{name}（{p}）。"},
    "photo_is": {"en": "This gallery photo shows {a_name}.", "zh": "这张图库照片是{name}。"},
    "model_wrong": {
        "en": "The model is wrong here: it says {other} ({p}), not {name}.",
        "zh": "模型在这里错了：它认为是{other}（{p}），而不是{name}。",
    },
    "model_right": {"en": "The model agrees.", "zh": "模型的判断正确。"},
    "nothing_for": {
        "en": "Nothing here speaks for {name} rather than the others.",
        "zh": "这里没有任何地方支持{name}而不是其他物种。",
    },
    "row_plain": {"en": "{method}: where the model looks", "zh": "{method}：模型看哪里"},
    "row_contrast": {
        "en": "Contrast ({method}): why this species rather than the others",
        "zh": "对比（{method}）：为什么是这个物种而不是其他",
    },
    "scale": {
        "en": "Colours: how strongly this region argues for the species, relative to the strongest panel of the row "
        "(blue = little, red = the most); a species with weak evidence is drawn faint.",
        "zh": "颜色：该区域支持这个物种的强度，相对于同一行中最强的一张图（蓝色 = 很少，红色 = 最多）；"
        "证据弱的物种颜色较淡。",
    },
    "missing_photos": {
        "en": "{count} gallery photos cannot be shown (not downloaded). Uploads always work.",
        "zh": "有 {count} 张图库照片无法显示（未下载）。上传照片始终可用。",
    },
    "quiz_correct": {"en": "Correct, it is {a_true}.", "zh": "答对了，这是{true}。"},
    "quiz_wrong": {
        "en": "Wrong, it is {a_true} (your answer: {a_guess}).",
        "zh": "答错了，这是{true}（你的答案：{guess}）。",
    },
    "quiz_caption": {
        "en": "The highlight shows what makes this {a_true} rather than {rather}.",
        "zh": "高亮部分显示了为什么这是{true}而不是{rather}。",
    },
    "quiz_model": {"en": "The model gives {true} {p}.", "zh": "模型给{true}的概率是 {p}。"},
    "quiz_model_other": {
        "en": " It would itself say {other} ({p}) here, so read the highlight with care.",
        "zh": "模型自己会认为这是{other}（{p}），所以请谨慎看待高亮部分。",
    },
    "quiz_teach": {"en": "Teaching: photo {i} of {n}", "zh": "教学：第 {i} 张，共 {n} 张"},
    "quiz_test": {"en": "Test (no feedback): photo {i} of {n}", "zh": "测试（无反馈）：第 {i} 张，共 {n} 张"},
    "quiz_done": {"en": "Finished", "zh": "完成"},
    "quiz_score": {"en": "Your score: {right} of {n} ({acc})", "zh": "你的得分：{n} 张中答对 {right} 张（{acc}）"},
    "quiz_chance": {"en": "Guessing at random would give {chance}.", "zh": "随机猜测的正确率是 {chance}。"},
    "quiz_table": {"en": "| species | right |", "zh": "| 物种 | 答对 |"},
    "quiz_row": {"en": "{right} of {shown}", "zh": "{shown} 张中 {right} 张"},
    "quiz_confusion": {"en": "You took {a_true} for {a_guess} {times}.", "zh": "你把{true}认成了{guess}，{times}。"},
    "quiz_once": {"en": "once", "zh": "1 次"},
    "quiz_times": {"en": "{n} times", "zh": "{n} 次"},
    "quiz_none": {"en": "No confusions: every test photo was right.", "zh": "没有混淆：每张测试照片都答对了。"},
    "quiz_or": {"en": " or ", "zh": "或"},
    "quiz_seed": {
        "en": "Quiz seed: {seed} (the same seed gives a class the same test photos)",
        "zh": "测验种子：{seed}（同一个种子给全班同样的测试照片）",
    },
    "quiz_plan": {
        "en": "This group has {n} photos ({right} that the model gets right, the only ones used to teach): "
        "the quiz uses {teach} teaching and {test} test photos.",
        "zh": "本组有 {n} 张照片（其中模型判断正确的 {right} 张，只有这些用于教学）：测验使用 {teach} 张教学照片和 "
        "{test} 张测试照片。",
    },
    "quiz_choose": {"en": "Choose a species first, then press Answer.", "zh": "请先选择一个物种，再点击“回答”。"},
    "sanity_note": {
        "en": "Guided Backprop and Guided Grad-CAM fail the model-randomisation sanity check (Adebayo et al., "
        "NeurIPS 2018): their pictures hardly change when the model's last layers are replaced by random weights, "
        "so they show the edges of the photo more than what the model uses. Do not learn species traits from them.",
        "zh": "Guided Backprop 和 Guided Grad-CAM 没有通过模型随机化健全性检查（Adebayo 等，NeurIPS 2018）："
        "把模型的最后几层换成随机权重后，它们的图几乎不变，所以它们显示的更多是照片的边缘，而不是模型实际使用的信息。"
        "不要从这两种图中学习物种特征。",
    },
    "slow": {"en": "{method} (slow without a GPU)", "zh": "{method}（没有 GPU 时较慢）"},
    "fails_sanity": {"en": "{method} (fails the sanity check)", "zh": "{method}（未通过健全性检查）"},
    "model_sees": {"en": "what the model sees", "zh": "模型看到的区域"},
    "skipped": {"en": "skipped: over the {s} s of one comparison", "zh": "已跳过：超过一次比较的 {s} 秒"},
    "runs_on": {"en": "{method} on {backbone}", "zh": "{backbone} 上的 {method}"},
    "done": {"en": "done", "zh": "完成"},
    "no_network": {
        "en": "The gallery photos could not be downloaded (no network): upload a photo, or set TEACHING_GALLERY_DIR.",
        "zh": "无法下载图库照片（没有网络）：请上传照片，或设置 TEACHING_GALLERY_DIR。",
    },
    "caption": {"en": "{name}. {credit}", "zh": "{name}。{credit}"},
    "run_title": {"en": "{method} on {backbone}, layer {layer}", "zh": "{method}，模型 {backbone}，层 {layer}"},
    "run_pair": {"en": ", each class rather than {name}", "zh": "，每个类别相对于{name}"},
    "run_group": {"en": ", each class rather than the others", "zh": "，每个类别相对于其他类别"},
    "no_font": {
        "en": "",
        "zh": "note: no font with Chinese glyphs found (apt-get install fonts-noto-cjk): grid.png keeps English "
        "labels / 未找到中文字体，grid.png 使用英文",
    },
    "colour_line": {"en": "Colour: {text}", "zh": "颜色：{text}"},
    "colour_none": {"en": "none", "zh": "无"},
    "colour_strongest": {"en": "strongest", "zh": "最强"},
    "scale_words": {
        "en": SCALE_WORDS,
        "zh": "该区域支持这个物种的强度，相对于最强的一张图",
    },
    "credit_line": {"en": "{n}. {name}: {credit}", "zh": "{n}. {name}：{credit}"},
}

# The fixed words of a photo's credit line (`teaching.galleries.credit`), as the pages show them in Chinese
CREDIT_WORDS_ZH = {
    "Photo: ": "照片：",
    "unknown author": "作者不详",
    "licence not checked yet": "许可尚未核实",
    ", cropped": "，已裁剪",
    "local photo": "本地照片",
}


def check_lang(lang: str) -> str:
    """`lang` when the pages speak it, else English (a browser may send any locale)."""
    return lang if lang in LANGS else "en"


def say(key: str, lang: str = "en", **values: Any) -> str:
    """The sentence `key` in a language, with its values filled in."""
    return MESSAGES[key][check_lang(lang)].format(**values)


def drawn_lang(lang: str) -> str:
    """The language a picture's text is drawn in: `lang`, or English when no installed font has its glyphs (PIL's
    built-in font has no Chinese; `teaching.render.cjk_font`)."""
    lang = check_lang(lang)
    return lang if can_draw(say("model_sees", lang)) else "en"


def bar_words(lang: str) -> dict[str, Any]:
    """The keyword arguments of `teaching.render.colour_bar` for its words in a language."""
    words = (say("colour_line", lang, text="{text}"), say("colour_none", lang), say("colour_strongest", lang))
    return {"text": say("scale_words", lang), "words": words}


def a_name(name: str) -> str:
    """The name with its indefinite article: "an African elephant", "a tusker"."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def percent(p: float) -> str:
    """A probability as a percentage with one decimal ("90.6%"), "<0.1%" below a thousandth and ">99.9%" above
    0.999 (never a model's "100%")."""
    if p > 0.999:
        return ">99.9%"
    return f"{p:.1%}" if p >= 0.001 else "<0.1%"


NO_NETWORK = MESSAGES["no_network"]["en"]


def credit_text(credit: str, lang: str = "en") -> str:
    """A photo's credit line in a language: its fixed words translated, the names, licence and link as they are."""
    if check_lang(lang) == "zh":
        for en, zh in CREDIT_WORDS_ZH.items():
            credit = credit.replace(en, zh)
    return credit


def download_failed(reasons: list[str]) -> bool:
    """True when a photo is missing because its download failed (the page then shows NO_NETWORK, the log the rest)."""
    return any(r.startswith("could not download") for r in reasons)
