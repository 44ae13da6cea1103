"""Machine teaching with Grad-CAM: where an ImageNet classifier looks, for each of several look-alike species."""

from teaching.explain import Explanation, explain

__all__ = ["Explanation", "explain"]
