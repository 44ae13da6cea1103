"""What every method shares: the output, the frozen request, the method base class with its facts, and the hooks.

How the engine reaches one pass: a forward hook (`capture`) swaps the target layer's output for a detached leaf, so
the backward stops at that layer (a partial backward), and `batched_grad` takes the gradients of all k targets at
once with `torch.autograd.grad(..., is_grads_batched=True)`. Hooks only act on the thread that registered them and
are removed in `finally`; `eval_mode` restores `model.training`; nothing is left on the model.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from teaching.errors import MethodError, ModelError

EPS = 1e-7


@dataclass
class CamOutput:
    """What a method computes for a batch."""

    raw: torch.Tensor  # (B, k, h, w) maps after ReLU, before any scaling (pixel methods: h, w = input size)
    logits: torch.Tensor  # (B, num_classes) from the same forward pass
    layer: str  # the dotted name of the target layer ("" for pixel-space methods without one)
    attributions: torch.Tensor | None = None  # (B, k, 3, H, W) signed pixel attributions (guided methods)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (+ "closed_form": see GradientCAM)
    signed: torch.Tensor | None = None  # (B, k, h, w) maps before ReLU, for methods linear in the class score
    classes: torch.Tensor | None = None  # (B, k) the classes of the maps (always set by compute_cams)


@dataclass(frozen=True)
class CamRequest:
    """Everything a method may need, set up by `compute_cams` and never changed (a method that needs another
    contrast makes a new request with `dataclasses.replace`)."""

    model: nn.Module
    x: torch.Tensor  # (B, 3, H, W)
    classes: torch.Tensor  # (B, k); (B, 0) while top_k > 0
    layer_name: str
    layer: nn.Module  # the target layer (the model itself for pixel-space methods)
    contrast: str | None = None  # None, "group" or "pair" (see `targets.class_scores`)
    versus: int | None = None  # class B of the "pair" contrast
    linear: nn.Module | None = None  # the head's linear layer, for the methods that use it (CamMethod.uses_head)
    options: Mapping[str, object] = field(default_factory=dict)  # method options (batch_size, n_samples, ...)
    top_k: int = 0  # > 0: the classes are the top_k of each image in the method's own forward pass

    def targets(self, logits: torch.Tensor) -> torch.Tensor:
        """The (B, k) target classes: `classes`, or the top_k of this pass's logits when left to the prediction."""
        if self.top_k:
            return logits.detach().topk(self.top_k, dim=1).indices
        return self.classes

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        """The whole-number option `name`, or a MethodError when it is not an integer >= minimum."""
        value = self.options.get(name, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise MethodError(f"option {name}={value!r} must be a whole number >= {minimum}")
        return value

    def real(self, name: str, default: float, minimum: float = 0.0) -> float:
        """The numeric option `name`, or a MethodError when it is not a number >= minimum."""
        value = self.options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
            raise MethodError(f"option {name}={value!r} must be a number >= {minimum:g}")
        return float(value)


class CamMethod:
    """A CAM method: `run` returns the raw maps (B, k, h, w) after ReLU, the logits of the same pass and the classes.

    The class attributes are the method's facts, read by every consumer (the app's choices, the accelerator, the
    evaluation) from the class itself, never copied into lists elsewhere.
    """

    name = ""  # the key in METHODS
    label = ""  # display name
    uses_layer = True  # False: pixel-space, no target layer
    uses_head = False  # takes the head's linear layer (closed-form gradients at a GAP + linear layer)
    needs_head = False  # cannot run without the head (the closed-form CAM)
    picks_classes = False  # reads top-k targets from its own forward pass (`CamRequest.targets`)
    slow_on_cpu = False  # hundreds of forward passes: a minute or more on a small CPU
    graph_safe = False  # fixed shapes and no host sync: a CUDA graph can hold it
    linear_in_score = False  # map before ReLU linear in the class score: the group contrast comes free
    fails_sanity = False  # fails the model-randomisation sanity check (Adebayo et al. 2018)

    def run(self, req: CamRequest) -> CamOutput:
        raise NotImplementedError


# --- layers and hooks ------------------------------------------------------------------------------------------


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called `name` in `model.named_modules()`, or a ModelError naming close candidates."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=4, cutoff=0.4)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise ModelError(f"no layer named {name!r} in {type(model).__name__}{hint}")


_MODE_LOCK = threading.Lock()
_MODE_USERS: dict[int, tuple[int, list[tuple[nn.Module, bool]]]] = {}  # id(model) -> (calls inside, flags before)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block; every submodule's `training` flag comes back as it was, also on errors.

    Calls from several threads on one shared model may overlap: the first one in records the flags and the last
    one out restores them, so no call ever runs in training mode because another one finished.
    """
    key = id(model)
    with _MODE_LOCK:
        users, flags = _MODE_USERS.get(key, (0, [(m, m.training) for m in model.modules()]))
        _MODE_USERS[key] = (users + 1, flags)
        model.eval()
    try:
        yield
    finally:
        with _MODE_LOCK:
            users, flags = _MODE_USERS.pop(key)
            if users > 1:
                _MODE_USERS[key] = (users - 1, flags)
            else:
                for module, training in flags:
                    module.training = training


@contextmanager
def capture(layer: nn.Module, detach: bool = True) -> Iterator[list[torch.Tensor]]:
    """Collect the layer's output during forward passes of the calling thread only.

    With `detach`, the kept output is a leaf that requires grad: gradients to it need only the part of the graph
    after the layer; without, it stays joined to the input's graph. Either way the model goes on with a clone, so
    in-place ops that follow (densenet's `F.relu(inplace=True)`) leave the kept activation as it was.
    """
    owner = threading.get_ident()
    store: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor | None:
        if threading.get_ident() != owner:
            return None
        if not isinstance(output, torch.Tensor):
            raise ModelError(f"the target layer returns {type(output).__name__}, not a tensor; choose another layer")
        kept = output.detach().requires_grad_(True) if detach else output
        store.append(kept)
        return kept.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def forward_with_activation(
    model: nn.Module, x: torch.Tensor, layer: nn.Module, detach: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass: (activation (B, C, h, w), logits (B, num_classes)).

    With `detach` the activation is a leaf that requires grad (gradient methods); without, the pass keeps the
    caller's grad mode, so under `torch.no_grad` no graph is built.
    """
    grad: AbstractContextManager[object] = torch.enable_grad() if detach else nullcontext()
    with grad, capture(layer, detach) as store:
        logits = model(x)
    if not store:
        raise ModelError("the target layer was not used in the forward pass; choose another layer")
    return store[-1], logits


def batched_grad(scores: torch.Tensor, wrt: torch.Tensor, retain_graph: bool = False) -> torch.Tensor:
    """d scores[:, j] / d wrt for every target j at once: (k, *wrt.shape), one batched backward.

    With `retain_graph` the graph stays for a second backward (Guided Grad-CAM's guided pass after the plain one).
    """
    k = scores.shape[1]
    if k == 1:
        (g,) = torch.autograd.grad(scores.sum(), wrt, retain_graph=retain_graph)
        return g.unsqueeze(0)
    eye = torch.eye(k, device=scores.device, dtype=scores.dtype)  # (k, k)
    grad_outputs = eye[:, None, :].expand(k, scores.shape[0], k)  # (k, B, k)
    try:
        (g,) = torch.autograd.grad(
            scores, wrt, grad_outputs=grad_outputs, retain_graph=retain_graph, is_grads_batched=True
        )
    except RuntimeError:  # an op without a vmap rule: fall back to k backward passes on the partial graph
        g = torch.stack(
            [torch.autograd.grad(scores[:, j].sum(), wrt, retain_graph=retain_graph or j < k - 1)[0] for j in range(k)]
        )
    return g
