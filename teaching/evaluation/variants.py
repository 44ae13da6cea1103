"""The method variants an evaluation runs, and the functions that make their maps.

A variant is an implementation ("ours", a peer library, or "baseline"), a method and an optional contrast
(`gradcam+pair`, `gradcam+group`). Ours get the head's linear layer by the app's rule (`Backbone.head`), so the
evaluation measures and times the path the app runs. Two reference maps that ignore the model, `random` and
`centre`, are always added. The peers' adapters live apart, in `peers.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from teaching.cams import compute_cams, get_method, minmax, upsample
from teaching.evaluation.data import EvaluationError
from teaching.models import Backbone

DEFAULT_METHODS = "gradcam,gradcampp,xgradcam,layercam,cam,gradcam+pair,gradcam+group"
CONTRASTS = ("pair", "group")
BASELINES = ("random", "centre")  # reference maps: constant (pixels in random order) and a centred Gaussian


@dataclass(frozen=True)
class Variant:
    """One way of making maps: an implementation, a method and an optional contrast."""

    impl: str  # "ours", "pytorch-grad-cam", "torchcam" or "baseline"
    method: str
    contrast: str | None = None  # None, "pair" (A rather than the runner-up B) or "group" (A rather than the rest)

    @property
    def name(self) -> str:
        return f"{self.method}+{self.contrast}" if self.contrast else self.method

    @property
    def plain(self) -> Variant:
        return Variant(self.impl, self.method)


MapFn = Callable[[nn.Module, torch.Tensor, Sequence[int], str | None, int | None], torch.Tensor]
"""(model, x (1, 3, S, S), classes, contrast, versus) -> maps (k, S, S) in [0, 1]."""


def parse_methods(text: str) -> list[tuple[str, str | None]]:
    """ "gradcam,cam+group,contrastive" -> [(method, contrast)]; "contrastive" is an alias of gradcam+group."""
    out: list[tuple[str, str | None]] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        method, _, contrast = item.partition("+")
        if method == "contrastive":
            method, contrast = "gradcam", contrast or "group"
        if contrast and contrast not in CONTRASTS:
            raise EvaluationError(f"{item!r}: the contrast after '+' is 'pair' or 'group'")
        out.append((method, contrast or None))
    if not out:
        raise EvaluationError("--methods names no method")
    return list(dict.fromkeys(out))


def our_maps(method: str, layer: str, bb: Backbone) -> MapFn:
    """Maps from the engine (`compute_cams`), upsampled to the input and min-max scaled.

    The head is the one `bb.head(method)` gives the app; a model passed in place of `bb.model` (a randomised copy,
    for the sanity check) gives its own module of the same name, so the copy's head is used with the copy.
    """
    head = bb.head(method)
    classifier = bb.spec.classifier

    def maps(
        model: nn.Module, x: torch.Tensor, classes: Sequence[int], contrast: str | None, versus: int | None
    ) -> torch.Tensor:
        linear = None if head is None else dict(model.named_modules())[classifier]
        out = compute_cams(model, x, list(classes), method, layer, contrast, versus, linear)
        return upsample(out.raw, (x.shape[-2], x.shape[-1]))[0]

    return maps


def baseline_maps(kind: str) -> MapFn:
    """Reference maps that ignore the model: all zero ("random": ranks pixels at random) or a centred Gaussian."""

    def maps(
        model: nn.Module, x: torch.Tensor, classes: Sequence[int], contrast: str | None, versus: int | None
    ) -> torch.Tensor:
        h, w = x.shape[-2:]
        if kind == "random":
            return torch.zeros(len(classes), h, w, device=x.device)
        ys = (torch.arange(h, device=x.device) + 0.5 - h / 2) / (h / 4)
        xs = (torch.arange(w, device=x.device) + 0.5 - w / 2) / (w / 4)
        g = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / 2)
        return minmax(g).expand(len(classes), h, w)

    return maps


def build_variants(
    methods: Sequence[tuple[str, str | None]], bb: Backbone, layer: str, peers: Mapping[Variant, MapFn]
) -> dict[Variant, MapFn]:
    """The variants to run and their map functions, in row order: ours, the given peers', the baselines."""
    out: dict[Variant, MapFn] = {}
    for method, contrast in methods:
        facts = get_method(method)  # a MethodError names the methods when it is unknown
        if facts.needs_head and bb.head(method) is None:
            raise EvaluationError(f"{facts.label} needs a global-average-pool + linear head; {bb.name} has none")
        out[Variant("ours", method, contrast)] = our_maps(method, layer, bb)
        if contrast:  # the plain map of the same method is the reference of the contrastive test
            out.setdefault(Variant("ours", method), our_maps(method, layer, bb))
    out.update(peers)
    for kind in BASELINES:
        out[Variant("baseline", kind)] = baseline_maps(kind)
    return out
