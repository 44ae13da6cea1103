"""Adapters to the peers, pytorch-grad-cam and TorchCAM, so their maps are measured beside ours (`--peers`).

Both are test-only dependencies (requirements-dev.txt): each is imported only when its maps are asked for, and a
peer that is not installed is left out with a note.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from teaching.cams import find_layer, upsample
from teaching.evaluation.variants import MapFn, Variant

PEERS: dict[str, dict[str, str]] = {  # our method -> the peer's class of the same method
    "pytorch-grad-cam": {
        "gradcam": "GradCAM",
        "gradcampp": "GradCAMPlusPlus",
        "xgradcam": "XGradCAM",
        "layercam": "LayerCAM",
        "scorecam": "ScoreCAM",
    },
    "torchcam": {
        "gradcam": "GradCAM",
        "gradcampp": "GradCAMpp",
        "xgradcam": "XGradCAM",
        "layercam": "LayerCAM",
        "scorecam": "ScoreCAM",
        "smoothgradcampp": "SmoothGradCAMpp",
        "cam": "CAM",
    },
}
PEER_PACKAGES = {"pytorch-grad-cam": ("pytorch_grad_cam", "grad-cam"), "torchcam": ("torchcam", "torchcam")}


def pytorch_grad_cam_maps(cls_name: str, layer: str) -> MapFn:
    """Maps from pytorch-grad-cam (their post-processing: ReLU, min-max, cv2 bilinear resize, min-max)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pytorch_grad_cam, cls_name)

    def maps(
        model: nn.Module, x: torch.Tensor, classes: Sequence[int], contrast: str | None, versus: int | None
    ) -> torch.Tensor:
        targets = [ClassifierOutputTarget(c) for c in classes]
        with cls(model=model, target_layers=[find_layer(model, layer)]) as cam:
            out = cam(input_tensor=x.repeat(len(classes), 1, 1, 1).requires_grad_(True), targets=targets)
        return torch.from_numpy(out).float().to(x.device)

    return maps


def torchcam_maps(cls_name: str, layer: str, classifier: str) -> MapFn:
    """Maps from TorchCAM (normalised at the layer), upsampled and min-max scaled as ours."""
    from torchcam import methods as tc

    cls = getattr(tc, cls_name)
    kwargs = {"fc_layer": classifier} if cls_name == "CAM" else {}

    def maps(
        model: nn.Module, x: torch.Tensor, classes: Sequence[int], contrast: str | None, versus: int | None
    ) -> torch.Tensor:
        out = []
        with cls(model, target_layer=layer, input_shape=tuple(x.shape[1:]), **kwargs) as extractor:
            for c in classes:
                scores = model(x.detach().clone().requires_grad_(True))
                out.append(extractor(class_idx=int(c), scores=scores)[0].detach())  # (1, h, w)
        return upsample(torch.cat(out).unsqueeze(0), (x.shape[-2], x.shape[-1]))[0]

    return maps


def peer_variants(
    methods: Sequence[tuple[str, str | None]], layer: str, classifier: str, log: Callable[[str], None]
) -> dict[Variant, MapFn]:
    """The installed peers' variants of the plain methods they implement (contrasts are ours only)."""
    plain = [m for m, c in methods if c is None]
    out: dict[Variant, MapFn] = {}
    for impl, table in PEERS.items():
        module, dist = PEER_PACKAGES[impl]
        try:
            importlib.import_module(module)
        except ImportError:
            log(f"note: {impl} is not installed (pip install {dist}; a test-only dependency): its rows are skipped")
            continue
        for method in (m for m in plain if m in table):
            if impl == "torchcam":
                out[Variant(impl, method)] = torchcam_maps(table[method], layer, classifier)
            else:
                out[Variant(impl, method)] = pytorch_grad_cam_maps(table[method], layer)
    return out
