"""Machine teaching with Grad-CAM: where an ImageNet classifier looks, for each of several look-alike species.

`explain` and `Explanation` (from `teaching.api`) are imported on first use, so the torch-free modules (quiz,
galleries, render) load in milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from teaching.api import Explanation, explain

__all__ = ["Explanation", "explain"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from teaching import api

        return getattr(api, name)
    raise AttributeError(f"module 'teaching' has no attribute {name!r}")
