"""How the pages write numbers and sentences, in English ("en") or Simplified Chinese ("zh")."""

from __future__ import annotations

from typing import Any

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
}


def check_lang(lang: str) -> str:
    """`lang` when the pages speak it, else English (a browser may send any locale)."""
    return lang if lang in LANGS else "en"


def say(key: str, lang: str = "en", **values: Any) -> str:
    """The sentence `key` in a language, with its values filled in."""
    return MESSAGES[key][check_lang(lang)].format(**values)


def a_name(name: str) -> str:
    """The name with its indefinite article: "an African elephant", "a tusker"."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def percent(p: float) -> str:
    """A probability as a percentage with one decimal ("90.6%"), or "<0.1%" below a thousandth."""
    return f"{p:.1%}" if p >= 0.001 else "<0.1%"


NO_NETWORK = "The gallery photos could not be downloaded (no network): upload a photo, or set TEACHING_GALLERY_DIR."


def download_failed(reasons: list[str]) -> bool:
    """True when a photo is missing because its download failed (the page then shows NO_NETWORK, the log the rest)."""
    return any(r.startswith("could not download") for r in reasons)
