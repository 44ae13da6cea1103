"""The implementations the benchmark times: ours (eager and accelerated), the bare forward pass, and the peers.

Each adapter sets up once and returns a `Runner` whose `fn()` is one timed call. The peers are called the way their
documentation shows, on a copy of the model whose parameters require grad (as a freshly loaded torchvision model's
do; pytorch-grad-cam and TorchCAM need that to get gradients at the layer). Ours runs on the frozen model
`load_backbone` gives. Outputs, for the agreement check, are maps (B, k, h, w) or pixel attributions (B, k, 3, H, W).

Peers (ANCHORS.md): pytorch-grad-cam 1.5.7 (k classes of one image = the image repeated k times, one backward;
Guided Backprop one image and one class per call), TorchCAM 0.5.0 (one forward, one backward per class), Captum 0.9.0
(the image repeated k times, a list of targets).
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from teaching.cams import METHODS, CamOutput, GradientCAM, compute_cams, find_layer
from teaching.cams.accel import FastCAM, prepare_model
from teaching.cams.maps import upsample

OUR_NAMES = {"guided": "guided_backprop"}  # benchmark method name -> engine method name, where they differ


@dataclass
class Case:
    """One cell of the grid: a model, its target layer, a batch and k shared target classes."""

    model: nn.Module  # ours: eval mode, parameters frozen
    peer_model: nn.Module  # the same weights with parameters that require grad
    layer: str  # dotted target layer name
    linear: str  # dotted name of the head's linear layer
    x: torch.Tensor  # (B, 3, H, W)
    classes: list[int]  # k class indices shared by the batch
    scorecam_batch: int = 128  # masked inputs per forward pass for the Score-CAM peers
    upsample: bool = True  # ours ends with maps min-max scaled at input size (False: the raw maps of the engine)
    gap_linear: bool = False  # `layer` feeds global-average-pool + `linear`: ours passes the head to every method


@dataclass
class Runner:
    """One implementation, set up: `fn()` is the timed call, `close()` removes what the set-up left on the model.

    `closed_form`: for ours, whether the last call's gradients came in closed form (the engine's
    timings["closed_form"]); None where that does not apply.
    """

    fn: Callable[[], Any]
    close: Callable[[], None] = field(default=lambda: None)
    closed_form: bool | None = None


def _shape(case: Case) -> tuple[int, int, int, int]:
    b, _, h, w = case.x.shape
    return b, len(case.classes), h, w


def _flat_targets(case: Case) -> list[int]:
    b, _, _, _ = _shape(case)
    return [c for _ in range(b) for c in case.classes]  # image-major, matching x.repeat_interleave(k, 0)


# --- the floor and ours ---------------------------------------------------------------------------------------


def forward(case: Case) -> Runner:
    """The bare forward pass under no_grad: the floor every method pays once."""

    def fn() -> torch.Tensor:
        with torch.no_grad():
            return case.model(case.x)

    return Runner(fn)


def fast_forward(case: Case, dtype: torch.dtype | None, graphs: bool) -> Runner:
    """The bare forward pass with the accelerated settings (channels_last, autocast, a CUDA graph)."""
    model = prepare_model(case.model, dtype, channels_last=True)
    x = case.x.contiguous(memory_format=torch.channels_last)
    device = x.device.type

    def step() -> torch.Tensor:
        cast = torch.autocast(device, dtype=dtype, cache_enabled=False) if dtype is not None else nullcontext()
        with torch.no_grad(), cast:
            return model(x)

    if not (graphs and device == "cuda"):
        return Runner(step)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step()

    def replay() -> torch.Tensor:
        graph.replay()
        return static_out

    return Runner(replay)


def _our_output(method: str, out: Any, size: tuple[int, int] | None) -> torch.Tensor:
    if method == "guided":
        return out.attributions
    if size is None:
        return out.raw  # (B, k, h, w) at the layer's resolution
    return upsample(out.raw, size)  # (B, k, H, W) each min-max scaled, as pytorch-grad-cam returns them


def _head(case: Case, name: str) -> nn.Module | None:
    """The head's linear layer where ours uses it: the closed-form CAM, and the gradient methods at a layer that
    feeds global-average-pool + linear (their gradients then come in closed form, checked by the engine)."""
    if name == "cam" or (case.gap_linear and isinstance(METHODS[name](), GradientCAM)):
        return find_layer(case.model, case.linear)
    return None


def _noting(runner: Runner, out: CamOutput) -> CamOutput:
    """Record on the runner whether this output's gradients came in closed form."""
    if "closed_form" in out.timings:
        runner.closed_form = out.timings["closed_form"] == 1.0
    return out


def ours(case: Case, method: str) -> Runner:
    """The engine as the service calls it, plus upsampling and min-max scaling to the input size."""
    name = OUR_NAMES.get(method, method)
    if name not in METHODS:
        raise KeyError(f"{name} is not in the engine yet")
    linear = _head(case, name)
    size = case.x.shape[-2:] if case.upsample else None

    def fn() -> torch.Tensor:
        out = _noting(runner, compute_cams(case.model, case.x, case.classes, name, case.layer, linear=linear))
        return _our_output(method, out, size)

    runner = Runner(fn)
    return runner


def fast(case: Case, method: str, dtype: torch.dtype | None, graphs: bool) -> Runner:
    """teaching.accel.FastCAM: channels_last, autocast and (on CUDA) graphs, same post-processing as `ours`.

    Inside a CUDA graph the gradient methods take the backward pass: the closed form's check needs a host sync.
    """
    name = OUR_NAMES.get(method, method)
    if name not in METHODS:
        raise KeyError(f"{name} is not in the engine yet")
    linear = _head(case, name)
    engine = FastCAM(case.model, case.layer, name, linear=linear, dtype=dtype, channels_last=True, graphs=graphs)
    classes = torch.tensor(case.classes, device=case.x.device)
    size = case.x.shape[-2:] if case.upsample else None

    def fn() -> torch.Tensor:
        return _our_output(method, _noting(runner, engine(case.x, classes)), size)

    runner = Runner(fn)
    return runner


# --- pytorch-grad-cam -------------------------------------------------------------------------------------------


def pgc(case: Case, method: str) -> Runner:
    """pytorch-grad-cam: the image repeated k times with one ClassifierOutputTarget each (its README's recipe)."""
    import pytorch_grad_cam as pg
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method == "guided":
        return _pgc_guided(case)
    kinds = {"gradcam": pg.GradCAM, "gradcampp": pg.GradCAMPlusPlus, "layercam": pg.LayerCAM, "scorecam": pg.ScoreCAM}
    if method not in kinds:
        raise KeyError(f"pytorch-grad-cam has no {method}")
    cam = kinds[method](model=case.peer_model, target_layers=[find_layer(case.peer_model, case.layer)])
    if method == "scorecam":
        import tqdm

        cam.batch_size = case.scorecam_batch
        pg.score_cam.tqdm = types.SimpleNamespace(tqdm=partial(tqdm.tqdm, disable=True))  # its bar, silenced
    b, k, h, w = _shape(case)
    targets = [ClassifierOutputTarget(c) for c in _flat_targets(case)]

    def fn() -> torch.Tensor:
        maps = cam(input_tensor=case.x.repeat_interleave(k, 0), targets=targets)  # numpy (B k, H, W)
        return torch.from_numpy(maps).view(b, k, h, w)

    return Runner(fn, cam.activations_and_grads.release)


def _pgc_guided(case: Case) -> Runner:
    from pytorch_grad_cam import GuidedBackpropReLUModel

    model = copy.deepcopy(case.peer_model)  # it swaps the model's nn.ReLU modules during each call
    guided = GuidedBackpropReLUModel(model, device=case.x.device)
    b, k, h, w = _shape(case)

    def fn() -> torch.Tensor:
        out = [guided(case.x[i : i + 1].clone(), target_category=c) for i in range(b) for c in case.classes]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).reshape(b, k, 3, h, w)  # from (H, W, 3) each

    return Runner(fn)


# --- TorchCAM ---------------------------------------------------------------------------------------------------


def torchcam(case: Case, method: str) -> Runner:
    """TorchCAM: one forward pass, then the extractor once per class (retain_graph for the gradient methods)."""
    import torchcam.methods as tc

    model = case.peer_model
    if method == "scorecam":
        extractor: Any = tc.ScoreCAM(model, case.layer, batch_size=case.scorecam_batch)
    elif method == "cam":
        extractor = tc.CAM(model, case.layer, fc_layer=case.linear)
    else:
        kinds = {"gradcam": tc.GradCAM, "gradcampp": tc.GradCAMpp, "layercam": tc.LayerCAM}
        if method not in kinds:
            raise KeyError(f"TorchCAM has no {method}")
        extractor = kinds[method](model, case.layer)
    uses_scores = method in ("gradcam", "gradcampp", "layercam")

    def fn() -> torch.Tensor:
        if uses_scores:
            scores = model(case.x)
            maps = [extractor(class_idx=c, scores=scores, retain_graph=True)[0] for c in case.classes]
        else:
            with torch.no_grad():
                model(case.x)
            maps = [extractor(class_idx=c)[0] for c in case.classes]
        return torch.stack(maps, 1)  # (B, k, h, w) min-max scaled at the layer's resolution

    return Runner(fn, extractor.remove_hooks)


# --- Captum -----------------------------------------------------------------------------------------------------


def captum(case: Case, method: str) -> Runner:
    """Captum: LayerGradCam (ReLU on) or GuidedBackprop on the image repeated k times with a list of targets."""
    from captum.attr import GuidedBackprop, LayerGradCam

    b, k, h, w = _shape(case)
    targets = _flat_targets(case)
    if method == "gradcam":
        explainer: Any = LayerGradCam(case.peer_model, find_layer(case.peer_model, case.layer))
        extra = {"relu_attributions": True}
    elif method == "guided":
        explainer = GuidedBackprop(copy.deepcopy(case.peer_model))
        extra = {}
    else:
        raise KeyError(f"Captum has no {method}")

    def fn() -> torch.Tensor:
        out = explainer.attribute(case.x.repeat_interleave(k, 0), target=targets, **extra)
        return out.reshape(b, k, *out.shape[1:]) if method == "guided" else out.reshape(b, k, *out.shape[-2:])

    return Runner(fn)


PEERS: dict[str, Callable[[Case, str], Runner]] = {"pgc": pgc, "torchcam": torchcam, "captum": captum}
"""Which peers implement what (checked against their source, see ANCHORS.md)."""

PEER_METHODS: dict[str, tuple[str, ...]] = {
    "pgc": ("gradcam", "gradcampp", "layercam", "scorecam", "guided"),
    "torchcam": ("gradcam", "gradcampp", "layercam", "scorecam", "cam"),
    "captum": ("gradcam", "guided"),
}

REFERENCE = {
    "gradcam": "pgc",
    "gradcampp": "pgc",
    "layercam": "pgc",
    "scorecam": "pgc",
    "guided": "captum",
    "cam": "torchcam",
}
"""The peer each method's agreement is checked against (Captum for Guided Backprop: pytorch-grad-cam's is per image)."""
