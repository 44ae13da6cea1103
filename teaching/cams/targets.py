"""What a map explains: the class scores, their one contrast helper, and the one class-range check.

The contrastive form explains y_A - y_B ("A rather than B", contrast "pair") or y_A - mean of the other targets
("A rather than the rest of its group", contrast "group"). `apply_contrast` is the only place that arithmetic is
written: it serves the scores (`class_scores`), the head's weight rows (`head.head_rows`) and signed maps
(`gradient.group_contrast`), which is why a contrast of maps linear in the score equals the map of the contrast.
"""

from __future__ import annotations

import torch

from teaching.errors import MethodError

CONTRASTS = ("group", "pair")


def check_classes(classes: torch.Tensor, num_classes: int, versus: int | None = None) -> None:
    """A MethodError naming the first class index (or `versus`) outside 0 .. num_classes - 1.

    The check reads the indices on the host; inside a CUDA graph capture that sync is not allowed, so there it only
    checks `versus` (FastCAM checks the classes itself before each replay).
    """
    bad = None
    if classes.numel() and not (classes.is_cuda and torch.cuda.is_current_stream_capturing()):
        lo, hi = int(classes.min()), int(classes.max())
        bad = lo if lo < 0 else hi if hi >= num_classes else None
    if bad is None and versus is not None and not 0 <= versus < num_classes:
        bad = versus
    if bad is not None:
        n = num_classes
        raise MethodError(f"class index {bad} is out of range: the model has {n} classes (0 to {n - 1})")


def apply_contrast(
    values: torch.Tensor, contrast: str | None, versus_values: torch.Tensor | None = None
) -> torch.Tensor:
    """The contrast of per-target values (B, k, ...) along dim 1; the same shape.

    Args:
        values: one entry per target: scores (B, k), weight rows (B, k, C) or signed maps (B, k, h, w).
        contrast: None (the values as they are), "group" (v_A - mean of the other targets' v) or "pair"
            (v_A - versus_values).
        versus_values: the values of class B, broadcastable against `values` (needed by "pair").
    """
    if contrast is None:
        return values
    if contrast == "pair":
        if versus_values is None:
            raise MethodError("the 'A rather than B' contrast needs versus=B")
        return values - versus_values
    if contrast == "group":
        k = values.shape[1]
        if k < 2:
            raise MethodError("the contrast with the rest of the group needs at least two classes")
        return values - (values.sum(1, keepdim=True) - values) / (k - 1)
    raise MethodError(f"unknown contrast {contrast!r}; use 'group' or 'pair'")


def class_scores(
    logits: torch.Tensor, classes: torch.Tensor, contrast: str | None = None, versus: int | None = None
) -> torch.Tensor:
    """The k scores to explain, (B, k).

    Args:
        logits: (B, num_classes).
        classes: (B, k) class indices per image.
        contrast: None for y_A; "group" for y_A - mean of the other targets; "pair" for y_A - y_versus.
        versus: the class B of the "pair" contrast.
    """
    check_classes(classes, logits.shape[1], versus)
    y = logits.gather(1, classes)  # (B, k)
    versus_scores = logits[:, versus : versus + 1] if versus is not None else None  # (B, 1)
    return apply_contrast(y, contrast, versus_scores)
