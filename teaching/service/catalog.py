"""What the pages offer: methods and models to choose from, named and checked from the facts of the method classes.

The display names, which methods are slow without a GPU and which fail the sanity check are class
attributes of the methods in `teaching.cams.METHODS`; this module only chooses which methods each page lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from teaching.cams import METHODS
from teaching.errors import MethodError, TeachingError, echo
from teaching.models import BACKBONES, DEFAULT_BACKBONE, OFFLINE_BACKBONES, get_spec, load_backbone
from teaching.service.groups import groups
from teaching.service.text import say

EXPLORE_METHODS = ("gradcam", "gradcampp", "smoothgradcampp", "scorecam", "layercam", "xgradcam", "cam")
COMPARE_METHODS = (
    "gradcam",
    "gradcampp",
    "smoothgradcampp",
    "scorecam",
    "layercam",
    "guided_backprop",
    "guided_gradcam",
    "occlusion",
)


def warm_up() -> None:
    """Load the default backbone and the groups now, so that the first request does not wait for them."""
    load_backbone(DEFAULT_BACKBONE)
    groups()


def available_methods(names: Sequence[str]) -> list[str]:
    """The methods of `names` that the engine knows in this installation, in the given order."""
    return [m for m in names if m in METHODS]


def label(method: str) -> str:
    """The display name of a method known to the engine (its class's `label`)."""
    return METHODS[method].label


def contrast_method(method: str) -> str:
    """The method of the contrast row beside `method`'s maps: the method itself, unless it is slow on a CPU.

    A slow method's own contrast would double a long computation (Score-CAM), so its row is the contrastive Grad-CAM.
    """
    return "contrastive" if METHODS[method].slow_on_cpu else method


def weights_available(name: str) -> bool:
    """True when backbone `name` can be loaded without a download: embedded weights, or already cached."""
    return get_spec(name).cached()


def available_backbones() -> list[str]:
    """The backbones usable now: the offline ones always, the others when their weights are cached."""
    return list(OFFLINE_BACKBONES) + [n for n in BACKBONES if n not in OFFLINE_BACKBONES and weights_available(n)]


def method_choices(names: Sequence[str], lang: str = "en") -> list[tuple[str, str]]:
    """(label, key) of the available methods of `names`; without a GPU the slow ones say so (in `lang`)."""
    slow = not torch.cuda.is_available()
    return [
        (say("slow", lang, method=label(m)) if slow and METHODS[m].slow_on_cpu else label(m), m)
        for m in available_methods(names)
    ]


def default_compare_methods() -> list[str]:
    """The methods a comparison starts with: all of them on a GPU, the fast ones on a CPU."""
    methods = available_methods(COMPARE_METHODS)
    return methods if torch.cuda.is_available() else [m for m in methods if not METHODS[m].slow_on_cpu]


def default_compare_backbones() -> list[str]:
    """The models a comparison starts with: those whose weights come with the installation."""
    return list(OFFLINE_BACKBONES)


def check_method(method: str, allowed: Sequence[str]) -> None:
    """Refuse a method that the page does not offer or the engine does not know, naming the ones it offers."""
    if not isinstance(method, str) or method not in allowed or method not in METHODS:
        choices = ", ".join(available_methods(allowed))
        raise MethodError(f"unknown method {echo(method)!r}; choose one of {choices}")


def check_backbone(backbone: str) -> None:
    """Refuse a backbone that is unknown, or whose weights would have to be downloaded."""
    get_spec(backbone)
    if not weights_available(backbone):
        raise TeachingError(
            f"the weights of {backbone} are not on this machine and the app does not download them; "
            f"choose one of {', '.join(available_backbones())}"
        )
