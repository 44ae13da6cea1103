"""ImageNet-1k class names (offline, from torchvision's weight metadata) and class resolution by index or name."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from teaching.errors import ClassNameError, echo


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
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def resolve_classes(classes: Iterable[int | str], labels: Sequence[str]) -> list[int]:
    """Turn class indices or names into indices.

    Names match with `_`/`-` read as spaces ("African_elephant" finds "African elephant"), case-insensitively
    unless two names differ only in case ("Cardigan" the corgi, 264, and "cardigan" the sweater, 474): then the
    exact case decides. Integers (Python or NumPy) and digit strings are indices.

    Raises:
        ClassNameError: an index out of range, or a name that is unknown (suggesting the closest names) or
            ambiguous.
    """
    exact, folded = _name_index(tuple(labels))
    out: list[int] = []
    for item in classes:
        if isinstance(item, str) and item.strip().lstrip("-").isdigit():
            item = int(item)
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            index = int(item)
            if not 0 <= index < len(labels):
                raise ClassNameError(f"class index {index} is out of range (0..{len(labels) - 1})")
            out.append(index)
            continue
        key = _normalise(str(item))
        if key in exact:
            out.append(exact[key])
            continue
        found = folded.get(key.lower(), [])
        if len(found) == 1:
            out.append(found[0])
            continue
        if found:
            options = " or ".join(f"{labels[i]!r} ({i})" for i in found)
            raise ClassNameError(f"class name {echo(item)!r} is ambiguous: {options}; give the index or the exact case")
        raise ClassNameError(f"unknown class name {echo(item)!r}{_suggest(key.lower(), folded, labels)}")
    if not out:
        raise ClassNameError("no target class given")
    return out


@lru_cache(maxsize=8)
def _name_index(labels: tuple[str, ...]) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Normalised name -> index, and case-folded name -> indices, built once per label list."""
    exact = {_normalise(name): i for i, name in enumerate(labels)}
    folded: dict[str, list[int]] = {}
    for i, name in enumerate(labels):
        folded.setdefault(_normalise(name).lower(), []).append(i)
    return exact, folded


def _suggest(key: str, folded: dict[str, list[int]], labels: Sequence[str]) -> str:
    """'; did you mean ...?' with up to three names that contain `key` or are spelled closest to it."""
    close = difflib.get_close_matches(key, list(folded), n=3, cutoff=0.5)
    substring = [name for name in folded if key and key in name][:3]
    hints = list(dict.fromkeys(substring + close))[:3]
    if not hints:
        return f"; give a class index (0..{len(labels) - 1}) or a name such as {labels[0]!r}"
    return f"; did you mean {', '.join(repr(labels[folded[h][0]]) for h in hints)}?"
