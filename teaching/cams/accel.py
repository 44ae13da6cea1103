"""Faster CAMs: channels-last memory, half precision and CUDA graphs around the engine's `compute_cams`.

The engine already does the least work (one forward pass, one batched gradient from the target layer on). What is
left on a GPU at batch 1 is launch overhead and float32 arithmetic; `FastCAM` removes both without new maths:

- channels_last (NHWC) memory for a copy of the model and for the input, the layout of cuDNN's tensor-core kernels;
- autocast to float16 or bfloat16, with the copy's conv and linear weights cast once so that no cast runs per call;
- one CUDA graph per input shape and number of classes: the first call captures forward, batched gradient and maps;
  later calls copy the input and the class indices into the graph's static buffers and replay it.

Precision (`python -m bench.precision`): on 12 ImageNet validation photos with the real efficientnet_lite0 weights
and their top-3 classes, the maps after `maps.upsample` (each min-max scaled to [0, 1]) differed from float32 by at
most 0.009 in float16 and 0.11 in bfloat16 (gradcam, gradcampp, layercam, cam; correlation >= 0.9999 and >= 0.995).
`TOLERANCE` holds the bounds we state and test. float16 keeps three more mantissa bits than bfloat16, which is why it
is the CUDA default. The bounds hold for classes the model gives some evidence for: a map whose positive part is tiny
next to its negative part is ill-conditioned after min-max scaling at any precision. A float16 call whose logits are
not finite (an overflow) is recomputed in float32 on the original model.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import torch
from torch import nn

from teaching.cams.core import CamOutput, find_layer
from teaching.cams.engine import class_table, compute_cams, get_method
from teaching.cams.targets import check_classes
from teaching.errors import MethodError, ModelError

if TYPE_CHECKING:
    from teaching.models import Backbone

TOLERANCE: dict[torch.dtype, float] = {torch.float16: 0.03, torch.bfloat16: 0.15}
"""Max abs difference of normalised maps (`maps.upsample`) against float32 that each autocast dtype may reach."""

WARMUP = 3  # eager runs on a side stream before a capture (cuDNN autotuning, lazy autograd and vmap set-up)

_GraphKey = tuple[tuple[int, ...], torch.dtype, int, str | None, int | None]  # input shape, dtype, k, contrast, versus


def prepare_model(model: nn.Module, dtype: torch.dtype | None, channels_last: bool) -> nn.Module:
    """A copy of `model` in channels-last memory with conv and linear weights cast to `dtype`; `model` is untouched.

    Returns `model` itself when neither is asked for. Other parameters (batch norm) stay float32: autocast feeds them.
    """
    if dtype is None and not channels_last:
        return model
    fast = copy.deepcopy(model)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if dtype is not None:
        for module in fast.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.to(dtype)
    return fast


def counterpart(model: nn.Module, twin: nn.Module, module: nn.Module) -> nn.Module:
    """The module of `twin` (a deep copy of `model`) that has the name `module` has in `model`."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return find_layer(twin, name)
    raise ModelError(f"the {type(module).__name__} passed as the head is not a module of {type(model).__name__}")


def as_float(out: CamOutput) -> CamOutput:
    """The same output with every tensor in float32 (autocast leaves maps and logits in half precision)."""
    return dataclasses.replace(
        out,
        raw=out.raw.float(),
        logits=out.logits.float(),
        attributions=out.attributions.float() if out.attributions is not None else None,
        signed=out.signed.float() if out.signed is not None else None,
        timings=dict(out.timings),
    )


def cloned(out: CamOutput, timings: dict[str, float]) -> CamOutput:
    """Fresh copies of a graph's static outputs (the next replay overwrites them), every field kept."""
    return dataclasses.replace(
        out,
        raw=out.raw.clone(),
        logits=out.logits.clone(),
        attributions=out.attributions.clone() if out.attributions is not None else None,
        signed=out.signed.clone() if out.signed is not None else None,
        classes=out.classes.clone() if out.classes is not None else None,
        timings=timings,
    )


def finite(out: CamOutput) -> bool:
    """Whether maps and logits hold no inf or NaN (one device sync; the engine already turns NaN maps into 0)."""
    return bool(torch.isfinite(out.raw).all() & torch.isfinite(out.logits).all())


@dataclasses.dataclass
class _Graph:
    """One captured call: replaying `graph` reads `x` and `classes` and rewrites `out`."""

    graph: torch.cuda.CUDAGraph
    x: torch.Tensor  # (B, 3, H, W) static input
    classes: torch.Tensor  # (B, k) static class indices
    out: CamOutput  # static outputs, float32


class FastCAM:
    """`compute_cams` for one model, target layer and method, in channels-last half precision, replayed from graphs.

    Graph replays are serialised by a lock (one set of static buffers per graph). Outputs are fresh float32 tensors on
    the model's device, in the same form as `compute_cams` returns them.

    Args:
        model: the classifier, on its device; it is left unchanged (a prepared copy is kept when needed).
        layer: dotted name of the target layer.
        method: a key of `cams.METHODS`.
        linear: the head's linear layer of `model` (`head.head_for`), for the methods that use it.
        dtype: autocast dtype (torch.float16 or torch.bfloat16), or None for float32.
        channels_last: run the copy and the input in NHWC memory.
        graphs: capture and replay CUDA graphs (ignored off CUDA and for methods that are not `graph_safe`).
        max_graphs: how many (input shape, k) graphs to keep; the least recently used one is dropped.
        options: method options passed on to `compute_cams`.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        method: str = "gradcam",
        linear: nn.Module | None = None,
        dtype: torch.dtype | None = torch.float16,
        channels_last: bool = True,
        graphs: bool = True,
        max_graphs: int = 8,
        options: dict[str, object] | None = None,
    ) -> None:
        if dtype is not None and dtype not in TOLERANCE:
            raise MethodError(f"dtype must be torch.float16, torch.bfloat16 or None, not {dtype}")
        device = next(model.parameters()).device
        self.reference = model
        self.reference_linear = linear
        self.model = prepare_model(model, dtype, channels_last)
        self.linear = linear if linear is None or self.model is model else counterpart(model, self.model, linear)
        self.layer = layer
        self.method = method
        self.dtype = dtype
        self.channels_last = channels_last
        self.graphs = graphs and device.type == "cuda" and get_method(method).graph_safe
        self.max_graphs = max_graphs
        self.options = dict(options or {})
        self._graphs: OrderedDict[_GraphKey, _Graph | None] = OrderedDict()  # None: could not be captured
        self._lock = threading.Lock()
        self.num_classes: int | None = None  # the model's output size, known after the first capture

    def __call__(
        self,
        x: torch.Tensor,
        classes: Sequence[int] | torch.Tensor,
        contrast: str | None = None,
        versus: int | None = None,
    ) -> CamOutput:
        """Maps of k classes for each image of `x` (B, 3, H, W), as `compute_cams` gives them, in float32."""
        table = class_table(classes, x).contiguous()
        if self.graphs:
            with self._lock:
                out = self._replay(x, table, contrast, versus)
        else:
            out = as_float(self._run(x, table, contrast, versus))
        if self.dtype == torch.float16 and not finite(out):
            out = compute_cams(
                self.reference,
                x,
                table,
                self.method,
                self.layer,
                contrast,
                versus,
                self.reference_linear,
                **self.options,
            )
        return out

    def _autocast(self, device_type: str) -> AbstractContextManager[object]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type, dtype=self.dtype, cache_enabled=False)  # no weight cache inside graphs

    def _run(self, x: torch.Tensor, table: torch.Tensor, contrast: str | None, versus: int | None) -> CamOutput:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast(x.device.type):
            return compute_cams(
                self.model, x, table, self.method, self.layer, contrast, versus, self.linear, **self.options
            )

    def _replay(self, x: torch.Tensor, table: torch.Tensor, contrast: str | None, versus: int | None) -> CamOutput:
        key: _GraphKey = (tuple(x.shape), x.dtype, int(table.shape[1]), contrast, versus)
        if key in self._graphs:
            self._graphs.move_to_end(key)
            graph = self._graphs[key]
        else:
            graph = self._capture(x, table, contrast, versus)
            self._graphs[key] = graph
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        if graph is None:
            return as_float(self._run(x, table, contrast, versus))
        self._check_classes(table)
        t0 = time.perf_counter()
        graph.x.copy_(x)
        graph.classes.copy_(table)
        graph.graph.replay()
        timings = {"replay": time.perf_counter() - t0}  # host time to enqueue; the device runs on asynchronously
        return cloned(graph.out, timings)

    def _check_classes(self, table: torch.Tensor) -> None:
        """A replay does not run the engine's class checks: out-of-range indices are refused here (one sync)."""
        if self.num_classes is not None:
            check_classes(table, self.num_classes)

    def _capture(self, x: torch.Tensor, table: torch.Tensor, contrast: str | None, versus: int | None) -> _Graph | None:
        """Warm up on a side stream, then capture one call; None when the method cannot run inside a graph.

        The warm-up runs the engine's checks (a bad class raises there). Capture is thread-local, so other threads'
        CUDA work goes on; a method that syncs with the host inside (a data-dependent shape, `.item()`) makes the
        capture fail, and that shape then runs eagerly.
        """
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        static_x = torch.empty_like(x, memory_format=layout).copy_(x)
        static_classes = table.clone()
        stream = torch.cuda.current_stream(x.device)
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(stream)
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                warm = self._run(static_x, static_classes, contrast, versus)
        stream.wait_stream(side)
        self.num_classes = int(warm.logits.shape[1])
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                out = as_float(self._run(static_x, static_classes, contrast, versus))
        except RuntimeError:
            torch.cuda.set_stream(stream)  # a failed capture_end leaves the capture stream current
            torch.cuda.synchronize(x.device)
            return None
        return _Graph(graph, static_x, static_classes, out)


def accelerate(backbone: Backbone, method: str = "gradcam", layer: str | None = None, **options: object) -> FastCAM:
    """A FastCAM for a loaded backbone with the settings that pay off on its device.

    On CUDA: float16 autocast, channels_last and CUDA graphs. Elsewhere the plain engine: float32, no model copy, so
    results equal `compute_cams` exactly (bfloat16 is faster on CPUs with AVX512-BF16 but moves maps by up to 0.11;
    ask for it with `FastCAM(..., dtype=torch.bfloat16, graphs=False)`).
    """
    cuda = backbone.device.type == "cuda"
    return FastCAM(
        backbone.model,
        layer or backbone.spec.target_layer,
        method,
        linear=backbone.head(method),
        dtype=torch.float16 if cuda else None,
        channels_last=cuda,
        graphs=cuda,
        options=options,
    )
