"""Machine teaching with Grad-CAM: where an ImageNet classifier looks, for each of several look-alike species.

`explain` and `Explanation` are imported on first use, so the torch-free modules (quiz, galleries, render) load fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from teaching.explain import Explanation, explain

__all__ = ["Explanation", "explain"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        module = importlib.import_module("teaching.explain")
        # importing the submodule bound `teaching.explain` to it; the package exports the function of that name
        globals().update(Explanation=module.Explanation, explain=module.explain)
        return globals()[name]
    raise AttributeError(f"module 'teaching' has no attribute {name!r}")
