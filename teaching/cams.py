"""The CAM engine: k class maps of a batch of images from one forward pass and one batched gradient.

References:
    Grad-CAM, Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391
    Grad-CAM++, Chattopadhay et al. 2018, https://arxiv.org/abs/1710.11063 (Eq. 19)
    XGrad-CAM, Fu et al. 2020, https://arxiv.org/abs/2008.02312
    LayerCAM, Jiang et al. 2021, https://ieeexplore.ieee.org/document/9462463
    CAM, Zhou et al. 2016, https://arxiv.org/abs/1512.04150

With A the target layer's activation (B, C, h, w) and y the class scores, for each of k targets:
    Grad-CAM   relu(sum_c mean_hw(dy/dA_c) A_c)
    Grad-CAM++ relu(sum_c [sum_hw relu(g) a] A_c), a = g^2 / (2 g^2 + sum_hw(A_c) g^3), a = 0 where g == 0
    XGrad-CAM  relu(sum_c [sum_hw g A_c / sum_hw A_c] A_c)
    LayerCAM   relu(sum_c relu(g) A_c)
    CAM        relu(sum_c W[y, c] A_c) for a global-average-pool + linear head (no gradient at all)
The contrastive form uses Grad-CAM on the score y_A - y_B ("A rather than B") or y_A - mean of the other targets
("A rather than the rest of its group"). Score-CAM and occlusion live in `perturb.py`, Smooth Grad-CAM++ in
`smooth.py`, the guided methods in `guided.py`; they register themselves in METHODS when this module is imported.

How the engine reaches one pass: a forward hook swaps the target layer's output for a detached leaf, so the
backward stops at that layer (a partial backward), and `torch.autograd.grad(..., is_grads_batched=True)` gives the
gradients of all k targets at once. Given the head's linear layer, at a layer that feeds global-average-pool +
linear the gradients are W[c] / (h w) and need no backward at all (`gap_linear_grads`, checked on every pass).
Hooks only act on the thread that registered them and are removed in `finally`; `model.training` is restored;
nothing is left on the model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from teaching.errors import MethodError, ModelError
from teaching.maps import float32_maths

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
    classes: torch.Tensor | None = None  # (B, k) the classes of the maps (set by compute_cams)


# --- layers and hooks ------------------------------------------------------------------------------------------


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called `name` in `model.named_modules()`, or a ModelError naming close candidates."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    import difflib

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


# --- targets ---------------------------------------------------------------------------------------------------


def class_scores(
    logits: torch.Tensor, classes: torch.Tensor, contrast: str | None = None, versus: int | None = None
) -> torch.Tensor:
    """The k scores to explain, (B, k).

    Args:
        logits: (B, num_classes).
        classes: (B, k) class indices per image.
        contrast: None for y_A; "group" for y_A - mean of the other targets; "pair" for y_A - y_versus.
        versus: the class B of the "pair" contrast.
    """
    n = logits.shape[1]
    # the check reads the indices on the host; inside a CUDA graph capture that sync is not allowed (FastCAM checks
    # the classes itself before each replay)
    bad = None
    if classes.numel() and not (classes.is_cuda and torch.cuda.is_current_stream_capturing()):
        lo, hi = int(classes.min()), int(classes.max())
        bad = lo if lo < 0 else hi if hi >= n else None
    if bad is None and versus is not None and not 0 <= versus < n:
        bad = versus
    if bad is not None:
        raise MethodError(f"class index {bad} is out of range: the model has {n} classes (0 to {n - 1})")
    y = logits.gather(1, classes)  # (B, k)
    if contrast is None:
        return y
    if contrast == "pair":
        if versus is None:
            raise MethodError("the 'A rather than B' contrast needs versus=B")
        return y - logits[:, versus : versus + 1]
    if contrast == "group":
        k = y.shape[1]
        if k < 2:
            raise MethodError("the contrast with the rest of the group needs at least two classes")
        return y - (y.sum(1, keepdim=True) - y) / (k - 1)
    raise MethodError(f"unknown contrast {contrast!r}; use 'group' or 'pair'")


def head_tolerance(dtype: torch.dtype) -> float:
    """Relative bound on how far logits computed in `dtype` may lie from the same head computed in float32.

    float32: summation order only (TF32 matmuls exceed it and so take the backward pass). float16 and bfloat16: the
    pooled features and the logits each rounded to the dtype come to at most one epsilon; twice that again for a
    mean summed in the dtype. Measured on lite0: bfloat16 0.003, float16 0.0003, float32 0; a layer one step before
    the pool (conv_head, layer4.2.bn3) misses by 0.1-0.2.
    """
    return 1e-4 if dtype in (torch.float32, torch.float64) else 4 * torch.finfo(dtype).eps


def feeds_gap_linear(acts: torch.Tensor, logits: torch.Tensor, linear: nn.Module) -> bool:
    """Whether this pass's logits (B, N) are `linear(mean_hw(acts))`, checked in float32 within `head_tolerance`.

    Each logit may differ by the tolerance times sum_c |W[n, c]| |mean_hw A_c| + |b_n|, the scale of the
    rounding of the dot product whatever its cancellations. False for another layer, another head, or an
    activation changed in place after the layer (densenet's functional ReLU).
    """
    if not isinstance(linear, nn.Linear) or acts.ndim != 4 or logits.ndim != 2:
        return False
    if acts.shape[:2] != (logits.shape[0], linear.in_features) or logits.shape[1] != linear.out_features:
        return False
    with torch.no_grad(), float32_maths(acts.device):
        pooled = acts.detach().float().mean((2, 3))  # (B, C)
        weight = linear.weight.detach().float()
        bias = linear.bias.detach().float() if linear.bias is not None else None
        expected = F.linear(pooled, weight, bias)
        scale = F.linear(pooled.abs(), weight.abs(), bias.abs() if bias is not None else None)
        gap = (logits.detach().float() - expected).abs()
        return bool((gap <= head_tolerance(logits.dtype) * scale).all())


def gap_linear_grads(
    acts: torch.Tensor,
    logits: torch.Tensor,
    linear: nn.Module,
    classes: torch.Tensor,
    contrast: str | None = None,
    versus: int | None = None,
) -> torch.Tensor | None:
    """The gradients of `class_scores` to acts without a backward pass, where acts feed global-average-pool + linear.

    There y = W mean_hw(A) + b, so dy_c/dA = W[c] / (h w) at every position, and a contrast of scores has the same
    contrast of W's rows. Returns (k, B, C, h, w) in float32 as a broadcast view of (k, B, C, 1, 1), or None when
    `feeds_gap_linear` fails on this pass (the caller then runs the backward), or inside a CUDA graph capture,
    where that check's host sync is not allowed.
    """
    if acts.is_cuda and torch.cuda.is_current_stream_capturing():
        return None
    if not isinstance(linear, nn.Linear) or not feeds_gap_linear(acts, logits, linear):
        return None
    w = head_rows(linear, classes, contrast, versus)  # (B, k, C)
    h, wd = acts.shape[-2:]
    g = (w / (h * wd)).transpose(0, 1)  # (k, B, C)
    return g[..., None, None].expand(*g.shape, h, wd)


def head_rows(
    linear: nn.Linear, classes: torch.Tensor, contrast: str | None = None, versus: int | None = None
) -> torch.Tensor:
    """The head's weight rows of the targets, (B, k, C) in float32, with the same contrast as `class_scores`:
    dy/d(pooled features) of each target score."""
    all_w = linear.weight.detach().float()  # (num_classes, C)
    w = all_w[classes]  # (B, k, C)
    return w if contrast is None else w - _contrast_weights(w, all_w, contrast, versus)


def batched_grad(scores: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
    """d scores[:, j] / d wrt for every target j at once: (k, *wrt.shape), one batched backward."""
    k = scores.shape[1]
    if k == 1:
        (g,) = torch.autograd.grad(scores.sum(), wrt)
        return g.unsqueeze(0)
    eye = torch.eye(k, device=scores.device, dtype=scores.dtype)  # (k, k)
    grad_outputs = eye[:, None, :].expand(k, scores.shape[0], k)  # (k, B, k)
    try:
        (g,) = torch.autograd.grad(scores, wrt, grad_outputs=grad_outputs, is_grads_batched=True)
    except RuntimeError:  # an op without a vmap rule: fall back to k backward passes on the partial graph
        g = torch.stack([torch.autograd.grad(scores[:, j].sum(), wrt, retain_graph=j < k - 1)[0] for j in range(k)])
    return g


# --- methods ---------------------------------------------------------------------------------------------------


@dataclass
class CamRequest:
    """Everything a method may need (set up by `compute_cams`)."""

    model: nn.Module
    x: torch.Tensor  # (B, 3, H, W)
    classes: torch.Tensor  # (B, k)
    layer_name: str
    layer: nn.Module
    contrast: str | None = None
    versus: int | None = None
    options: dict[str, object] = field(default_factory=dict)
    top_k: int = 0  # > 0: `classes` is still to be chosen, the top_k of each image from the method's forward pass

    def targets(self, logits: torch.Tensor) -> torch.Tensor:
        """The (B, k) target classes, taken from this pass's logits when they were left to the prediction."""
        if self.top_k:
            self.classes = logits.detach().topk(self.top_k, dim=1).indices
            self.top_k = 0
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
    """A CAM method: `run` returns the raw maps (B, k, h, w) after ReLU and the logits of the same pass.

    `picks_classes`: `run` reads its targets through `req.targets(logits)` after its forward pass, so classes left
    to the prediction cost no extra pass; for the other methods `compute_cams` predicts them first.
    """

    name = ""
    uses_layer = True
    picks_classes = False

    def run(self, req: CamRequest) -> CamOutput:
        raise NotImplementedError


class GradientCAM(CamMethod):
    """Base of the gradient methods: one forward, one batched gradient, then `combine(A, G)`.

    Given the head's linear layer (option "linear") and a target layer that feeds global-average-pool + linear, the
    gradients come in closed form (`gap_linear_grads`) instead of from the backward pass; timings["closed_form"]
    says which (1.0 or 0.0), timings["backward"] is the time of either.

    `linear_in_score`: the map before ReLU is linear in the gradient, so the map of a contrast of scores is the same
    contrast of the maps (see `group_contrast`) and needs no second pass.
    """

    linear_in_score = False
    picks_classes = True

    def run(self, req: CamRequest) -> CamOutput:
        t0 = time.perf_counter()
        acts, logits = forward_with_activation(req.model, req.x, req.layer)
        t1 = time.perf_counter()
        scores = class_scores(logits, req.targets(logits), req.contrast, req.versus)  # (B, k)
        linear = req.options.get("linear")
        grads = None
        if isinstance(linear, nn.Module):
            grads = gap_linear_grads(acts, logits, linear, req.classes, req.contrast, req.versus)
        closed_form = grads is not None
        if grads is None:
            grads = batched_grad(scores, acts)  # (k, B, C, h, w)
        t2 = time.perf_counter()
        with torch.no_grad():  # the maths in float32, whatever the model's precision
            signed = self.combine(acts.detach().float().unsqueeze(0), grads.float()).transpose(0, 1)  # (B, k, h, w)
        timings = {"forward": t1 - t0, "backward": t2 - t1, "maps": time.perf_counter() - t2}
        timings["closed_form"] = float(closed_form)
        kept = signed if self.linear_in_score else None
        return CamOutput(F.relu(signed), logits.detach(), req.layer_name, signed=kept, timings=timings)

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """Map before ReLU, (k, B, h, w), from acts (1, B, C, h, w) and grads (k, B, C, h, w)."""
        return weighted_sum(self.channel_weights(acts, grads), acts)

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """(k, B, C) channel weights."""
        raise NotImplementedError


def spatially_constant(grads: torch.Tensor) -> torch.Tensor | None:
    """grads[..., 0, 0], (k, B, C), when grads (k, B, C, h, w) is a view broadcast over h and w (as the closed form
    `gap_linear_grads` gives), so the methods can work without the spatial dimensions; else None."""
    return grads[..., 0, 0] if grads.stride()[-2:] == (0, 0) else None


def weighted_sum(weights: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """sum_c weights[j, b, c] acts[0, b, c] for every target j, (k, B, h, w), from weights (k, B, C) and acts
    (1, B, C, h, w): one batched matmul over the images, without the (k, B, C, h, w) product."""
    with float32_maths(acts.device):
        return torch.einsum("kbc,bchw->kbhw", weights, acts[0])


class GradCAM(GradientCAM):
    name = "gradcam"
    linear_in_score = True

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        constant = spatially_constant(grads)
        return constant if constant is not None else grads.mean((-2, -1))


class GradCAMpp(GradientCAM):
    name = "gradcampp"

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return gradcampp_weights(acts, grads)


def gradcampp_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights (paper Eq. 19, with pytorch-grad-cam's eps = 1e-6), (k, B, C).

    A spatially constant gradient is worked on (k, B, C) alone: its h w equal terms sum to h w times one. The
    steps run in place on their own temporaries (each is k B C floats, or k B C h w: at k = 1000 that counts).
    """
    constant = spatially_constant(grads)
    sum_acts = acts.sum((-2, -1))  # (1, B, C)
    g, s = (constant, sum_acts) if constant is not None else (grads, sum_acts[..., None, None])
    g2 = g * g
    denominator = (g2 * g).mul_(s).add_(g2, alpha=2).add_(1e-6)  # 2 g^2 + sum(A) g^3 + 1e-6
    alpha = g2.div_(denominator).masked_fill_(g == 0, 0.0)
    terms = F.relu(g).mul_(alpha)
    return terms.mul_(grads.shape[-2] * grads.shape[-1]) if constant is not None else terms.sum((-2, -1))


class XGradCAM(GradientCAM):
    name = "xgradcam"
    linear_in_score = True

    def channel_weights(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        sum_acts = acts.sum((-2, -1))  # (1, B, C)
        constant = spatially_constant(grads)
        weighted = constant * sum_acts if constant is not None else (grads * acts).sum((-2, -1))
        return weighted / (sum_acts + EPS)


class LayerCAM(GradientCAM):
    name = "layercam"

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        constant = spatially_constant(grads)
        if constant is not None:
            return weighted_sum(F.relu(constant), acts)
        return (F.relu(grads) * acts).sum(2)


class ContrastiveCAM(GradCAM):
    """Grad-CAM of y_A - y_B, or of y_A - mean of the other targets (the default)."""

    name = "contrastive"

    def run(self, req: CamRequest) -> CamOutput:
        if req.contrast is None:
            req.contrast = "pair" if req.versus is not None else "group"
        return super().run(req)


class ClosedFormCAM(CamMethod):
    """CAM for a global-average-pool + linear head: every class map for the cost of one forward pass.

    At the layer feeding the pool, dy_c/dA = W[c] / (h w) everywhere, so Grad-CAM is this map divided by h w.
    """

    name = "cam"
    picks_classes = True

    def run(self, req: CamRequest) -> CamOutput:
        t0 = time.perf_counter()
        linear = req.options.get("linear")
        if not isinstance(linear, nn.Linear):
            raise MethodError("the closed-form CAM needs a global-average-pool + linear head (efficientnet, resnet)")
        with torch.no_grad():
            acts, logits = forward_with_activation(req.model, req.x, req.layer, detach=False)
            t1 = time.perf_counter()
            class_scores(logits, req.targets(logits), req.contrast, req.versus)  # checks the targets
            w = head_rows(linear, req.classes, req.contrast, req.versus)  # (B, k, C)
            signed = torch.einsum("bkc,bchw->bkhw", w, acts.float())  # (B, k, h, w)
        timings = {"forward": t1 - t0, "maps": time.perf_counter() - t1}
        return CamOutput(F.relu(signed), logits.detach(), req.layer_name, signed=signed, timings=timings)


def group_contrast(signed: torch.Tensor) -> torch.Tensor:
    """relu(m_A - mean of the other targets' maps) from signed maps (B, k, h, w) before ReLU.

    For a method whose map is linear in the class score (Grad-CAM, XGrad-CAM, CAM) this is exactly the map of
    y_A - mean(y_others), the "group" contrast, without another forward or backward pass.
    """
    k = signed.shape[1]
    if k < 2:
        raise MethodError("the contrast with the rest of the group needs at least two classes")
    return F.relu(signed - (signed.sum(1, keepdim=True) - signed) / (k - 1))


def _contrast_weights(w: torch.Tensor, all_w: torch.Tensor, contrast: str, versus: int | None) -> torch.Tensor:
    if contrast == "pair":
        if versus is None:
            raise MethodError("the 'A rather than B' contrast needs versus=B")
        return all_w[versus].expand_as(w)
    k = w.shape[1]
    if k < 2:
        raise MethodError("the contrast with the rest of the group needs at least two classes")
    return (w.sum(1, keepdim=True) - w) / (k - 1)


METHODS: dict[str, Callable[[], CamMethod]] = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMpp,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "contrastive": ContrastiveCAM,
    "cam": ClosedFormCAM,
}


def register(name: str) -> Callable[[type[CamMethod]], type[CamMethod]]:
    """Class decorator adding a method to METHODS (used by the modules that hold the other methods)."""

    def wrap(cls: type[CamMethod]) -> type[CamMethod]:
        METHODS[name] = cls
        return cls

    return wrap


def get_method(name: str) -> CamMethod:
    """An instance of the method called `name`, or a MethodError listing them."""
    if name not in METHODS:
        raise MethodError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]()


def compute_cams(
    model: nn.Module,
    x: torch.Tensor,
    classes: Sequence[int] | torch.Tensor | None,
    method: str = "gradcam",
    layer: str = "",
    contrast: str | None = None,
    versus: int | None = None,
    linear: nn.Module | None = None,
    **options: object,
) -> CamOutput:
    """Maps of k target classes for each image of a batch.

    The maps (`raw`, float32, NaN-free) and the logits come back in float32 whatever the model's precision; an
    input whose dtype differs from the model's weights is cast to it. Class indices outside the model's classes
    raise a MethodError.

    Args:
        model: any classifier returning logits (B, num_classes).
        x: (B, 3, H, W) preprocessed input on the model's device.
        classes: k class indices shared by all images, or a (B, k) tensor of per-image indices; None for the
            `top_k` (an option, default 3) most probable classes of each image, read from the method's own forward
            pass where it can (gradient methods, CAM), else from one pass before. `CamOutput.classes` has them.
        method: a key of METHODS.
        layer: dotted target layer name (ignored by pixel-space methods).
        contrast: None, "group" or "pair" (see `class_scores`).
        versus: class B for the "pair" contrast.
        linear: the head's linear layer: needed by the closed-form CAM; the gradient methods then take their
            gradients in closed form where `layer` feeds global-average-pool + `linear` (checked on every pass).
        options: method options (e.g. batch_size, n_samples, std, seed).
    """
    impl = get_method(method)
    if x.ndim != 4:
        raise MethodError(f"the input must be a (batch, channels, height, width) tensor; got shape {tuple(x.shape)}")
    weight = next(model.parameters(), None)
    if weight is not None and weight.is_floating_point() and x.dtype != weight.dtype:
        x = x.to(weight.dtype)
    target = find_layer(model, layer) if impl.uses_layer else model
    if linear is not None:
        options["linear"] = linear
    pick, top_k = 0, options.pop("top_k", 3)  # pick > 0: the method takes the top `pick` from its own pass
    with eval_mode(model):
        if classes is None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise MethodError(f"top_k={top_k!r} must be a whole number >= 1")
            if impl.picks_classes:
                pick, classes = top_k, torch.zeros(x.shape[0], 0, dtype=torch.long)  # (B, 0) until the pass
            else:
                with torch.no_grad():
                    classes = model(x).topk(top_k, dim=1).indices
        cls = torch.as_tensor(classes, dtype=torch.long, device=x.device)
        if cls.ndim == 1:
            cls = cls.unsqueeze(0).expand(x.shape[0], -1)  # (B, k)
        if cls.ndim != 2 or cls.shape[0] != x.shape[0]:
            raise MethodError(f"classes must be k indices or a (batch, k) table; got shape {tuple(cls.shape)}")
        req = CamRequest(model, x, cls, layer, target, contrast, versus, options, top_k=pick)
        out = impl.run(req)
    out.classes = req.classes
    out.raw = torch.nan_to_num(out.raw.float(), nan=0.0)
    if out.signed is not None:
        out.signed = torch.nan_to_num(out.signed.float(), nan=0.0)
    out.logits = out.logits.float()
    if out.attributions is not None:
        out.attributions = out.attributions.float()
    return out


from teaching import guided, perturb, smooth  # noqa: E402, F401  (they register their methods with `register` above)
