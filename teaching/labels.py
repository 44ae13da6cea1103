"""ImageNet-1k class names (offline, from torchvision's weight metadata) and class resolution by index or name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from teaching.errors import ClassNameError


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the 0-based torchvision/timm order ("tench", ..., "toilet tissue")."""
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Read a labels file: one class name per line (blank lines ignored)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ClassNameError(f"{path}: cannot read the labels file ({exc.strerror or exc})") from None
    names = tuple(line.strip() for line in lines if line.strip())
    if not names:
        raise ClassNameError(f"{path}: the labels file has no class names (one name per line expected)")
    return names


def _normalise(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def resolve_classes(classes: Iterable[int | str], labels: Sequence[str]) -> list[int]:
    """Turn class indices or names into indices.

    Names match case-insensitively, with `_`/`-` read as spaces ("african_elephant" finds "African elephant");
    digit strings are indices. An unknown name raises ClassNameError suggesting the closest names.
    """
    lookup = {_normalise(name): i for i, name in enumerate(labels)}
    out: list[int] = []
    for item in classes:
        if isinstance(item, str) and item.strip().lstrip("-").isdigit():
            item = int(item)
        if isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item < len(labels):
                raise ClassNameError(f"class index {item} is out of range (0..{len(labels) - 1})")
            out.append(item)
            continue
        key = _normalise(str(item))
        if key in lookup:
            out.append(lookup[key])
            continue
        close = difflib.get_close_matches(key, list(lookup), n=3, cutoff=0.5)
        substring = [n for n in lookup if key and key in n][:3]
        hints = list(dict.fromkeys(substring + close))[:3]
        hint = f"; did you mean {', '.join(repr(labels[lookup[h]]) for h in hints)}?" if hints else ""
        raise ClassNameError(f"unknown class name {item!r}{hint}")
    if not out:
        raise ClassNameError("no target class given")
    return out
