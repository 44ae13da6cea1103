"""The public Python API: `explain(image, classes, method, backbone, layer)` -> Explanation.

`prepare(photo, backbone)` decodes and preprocesses a photo once for a backbone; `explain` takes the result in place
of a photo, so a page that explains one photo several times (plain and contrast rows, several methods) does that
work once per backbone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from teaching.cams import METHODS, compute_cams, group_contrast, place_maps, row_scale, scaled, upsample
from teaching.errors import MethodError
from teaching.images import load_image
from teaching.labels import resolve_classes
from teaching.models import DEFAULT_BACKBONE, Backbone, load_backbone


@dataclass(frozen=True)
class Prepared:
    """A photo decoded once and preprocessed once for one backbone: what `explain` needs besides the classes."""

    image: Image.Image  # the RGB photo, EXIF orientation applied
    x: torch.Tensor  # (1, 3, S, S) the exact model input
    crop_box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the photo that the model sees
    backbone: Backbone


def prepare(
    image: str | Path | Image.Image | np.ndarray,
    backbone: str | Backbone = DEFAULT_BACKBONE,
    weights: str | Path | None = None,
    labels: str | Path | None = None,
    device: str | None = None,
    decoded: bool = False,
) -> Prepared:
    """Decode `image` (checked by `load_image`) and preprocess it for `backbone` (a name or a loaded Backbone).

    With `decoded`, `image` is a PIL image that `load_image` already returned (RGB, EXIF applied, size checked)
    and is used as it is, not decoded and copied again.
    """
    bb = backbone if isinstance(backbone, Backbone) else load_backbone(backbone, weights, labels, device)
    img = image if decoded and isinstance(image, Image.Image) and image.mode == "RGB" else load_image(image)
    x, box = bb.preprocess(img)
    return Prepared(img, x, box, bb)


@dataclass
class Explanation:
    """Maps of k classes for one image, and the prediction of the same forward pass."""

    image: Image.Image  # the RGB photo, EXIF orientation applied
    classes: list[int]  # the k target class indices
    class_names: list[str]
    method: str
    backbone: str
    raw_maps: np.ndarray  # float32 (k, h, w) at the target layer, after ReLU, before any scaling
    probs: np.ndarray  # float32 (num_classes,) softmax of the same forward pass (at the backbone's temperature)
    target_layer: str  # dotted module name used, e.g. "bn2" or "layer4"
    input_tensor: torch.Tensor  # (1, 3, S, S) the exact preprocessed input
    crop_box: tuple[int, int, int, int]  # (x0, y0, x1, y1) of the photo that the model saw
    labels: Sequence[str] = field(repr=False, default=())
    attributions: np.ndarray | None = None  # float32 (k, 3, S, S) signed pixel attributions (guided methods)
    signed_maps: np.ndarray | None = None  # float32 (k, h, w) before ReLU, for methods linear in the class score
    contrast: str | None = None  # the contrast the maps show: None, "group" or "pair"
    timings: dict[str, float] = field(default_factory=dict)

    def top(self, n: int = 5) -> list[tuple[int, str, float]]:
        """The n most probable classes as (index, name, probability)."""
        order = np.argsort(-self.probs)[:n]
        return [(int(i), self.labels[int(i)], float(self.probs[i])) for i in order]

    @cached_property
    def maps(self) -> np.ndarray:
        """float32 (k, H, W), each scaled to [0, 1], at the image's size (0 outside the model's crop).

        Made on first use: a phone photo's full-size maps take tens of MB and a page shows them much smaller
        (`crop_maps(size)`, `maps_at(size)`).
        """
        return place_maps(torch.from_numpy(self.raw_maps), self.crop_box, self.image.size)

    def crop_maps(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The maps over the crop the model saw, (k, y1 - y0, x1 - x0), each scaled to [0, 1].

        With `size` = (width, height) they are made at that size straight from the raw maps (for display).
        """
        x0, y0, x1, y1 = self.crop_box
        if size is None:
            return self.maps[:, y0:y1, x0:x1]
        width, height = size
        return upsample(torch.from_numpy(self.raw_maps)[None], (height, width))[0].numpy()

    @cached_property
    def scale(self) -> float:
        """The row's scale: the strongest raw evidence of the k maps, as resized to the crop in the photo.

        `shown_maps` divides every map by it, so the strongest panel of the row reaches 1 and a class with a
        tenth of its evidence is drawn at a tenth. 0 when every map is 0.
        """
        x0, y0, x1, y1 = self.crop_box
        return row_scale(torch.from_numpy(self.raw_maps), (y1 - y0, x1 - x0))

    @cached_property
    def shown_maps(self) -> np.ndarray:
        """float32 (k, H, W) at the image's size: exactly the maps the app and the CLI draw.

        Every raw map resized (bilinear) to the model's crop and divided by the row's `scale` (one scale for the k
        maps: the strongest panel reaches 1, weak evidence is drawn faint), in [0, 1]; 0 outside the crop, which
        the app and the CLI do not draw (they show the crop the model saw, `shown_crop`). `maps` keeps each map
        min-max scaled on its own, as the peer libraries draw them.
        """
        return place_maps(torch.from_numpy(self.raw_maps), self.crop_box, self.image.size, self.scale)

    def shown_crop(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """`shown_maps` over the crop the model saw, (k, y1 - y0, x1 - x0); with `size` = (width, height) made at
        that size straight from the raw maps, on the same row scale (for display)."""
        x0, y0, x1, y1 = self.crop_box
        if size is None:
            return self.shown_maps[:, y0:y1, x0:x1]
        width, height = size
        return scaled(torch.from_numpy(self.raw_maps), (height, width), self.scale).numpy()

    def maps_at(self, size: tuple[int, int]) -> np.ndarray:
        """`maps` for the whole photo shown at `size` = (width, height), made straight from the raw maps."""
        width, height = size
        sx, sy = width / self.image.width, height / self.image.height
        x0, y0, x1, y1 = self.crop_box
        box = (
            round(x0 * sx),
            round(y0 * sy),
            max(round(x1 * sx), round(x0 * sx) + 1),
            max(round(y1 * sy), round(y0 * sy) + 1),
        )
        return place_maps(torch.from_numpy(self.raw_maps), box, size)


def contrast_of(e: Explanation) -> Explanation | None:
    """The "A rather than the rest of the group" maps of a plain explanation, without another pass.

    Exact for methods whose map is linear in the class score (gradcam, xgradcam, cam): the same maps as
    `explain(..., contrast="group")`. None for the other methods or when `e` is already a contrast.
    """
    if e.signed_maps is None or e.contrast is not None or len(e.classes) < 2:
        return None
    t0 = time.perf_counter()
    raw = group_contrast(torch.from_numpy(e.signed_maps)[None])[0]  # (k, h, w)
    elapsed = time.perf_counter() - t0
    timings = {"maps": elapsed, "total": elapsed}
    return replace(e, raw_maps=raw.numpy(), signed_maps=None, contrast="group", timings=timings)


def explain(
    image: str | Path | Image.Image | np.ndarray | Prepared,
    classes: Sequence[int | str] | None = None,
    method: str = "gradcam",
    backbone: str | Backbone | None = None,
    layer: str | None = None,
    weights: str | Path | None = None,
    labels: str | Path | None = None,
    device: str | None = None,
    contrast: str | None = None,
    versus: int | str | None = None,
    top_k: int = 3,
    **options: object,
) -> Explanation:
    """Explain one image: where the model looks for each of k classes.

    Args:
        image: a PIL image, an array (H, W[, C]) or a path; or a `Prepared` photo (from `prepare`), whose backbone
            is then used.
        classes: ImageNet indices or names ("African elephant"); default the `top_k` predicted classes.
        method: gradcam, gradcampp, smoothgradcampp, scorecam, layercam, xgradcam, contrastive, guided_backprop,
            guided_gradcam, occlusion or cam.
        backbone: a registry name (loaded once per process) or a loaded Backbone; default efficientnet_lite0.
        layer: dotted target layer; default the backbone's.
        weights, labels, device: see `teaching.models.load_backbone`.
        contrast: "group" (A rather than the other targets) or "pair" (A rather than `versus`); the method
            "contrastive" defaults to "group".
        versus: class B of the pair contrast (index or name).
        options: method options (batch_size, n_samples, std, seed, window, stride).
    """
    t0 = time.perf_counter()
    if isinstance(image, Prepared):
        if backbone is not None and _name(backbone) != image.backbone.name:
            raise MethodError(f"the photo was prepared for {image.backbone.name}, not {_name(backbone)}")
        photo = image
        t1 = t2 = time.perf_counter()
    else:
        bb = (
            backbone
            if isinstance(backbone, Backbone)
            else load_backbone(backbone or DEFAULT_BACKBONE, weights, labels, device)
        )
        t1 = time.perf_counter()
        img = load_image(image)
        x, box = bb.preprocess(img)
        photo = Prepared(img, x, box, bb)
        t2 = time.perf_counter()
    e = explain_batch([photo], classes, method, layer, contrast, versus, top_k, **options)[0]
    e.timings = {**e.timings, "load": t1 - t0, "preprocess": t2 - t1, "total": time.perf_counter() - t0}
    return e


def explain_batch(
    photos: Sequence[Prepared],
    classes: Sequence[int | str] | None = None,
    method: str = "gradcam",
    layer: str | None = None,
    contrast: str | None = None,
    versus: int | str | None = None,
    top_k: int = 3,
    **options: object,
) -> list[Explanation]:
    """Explain several prepared photos with one engine call: one forward pass and one batched gradient.

    Every front end that explains many photos (the local `explain` command, the Ray actors) calls this, so their
    maps are the same. The photos must share one backbone; they all have its S x S input (each its own crop box).
    Arguments as in `explain`; `classes` None gives each photo its own `top_k` classes.
    """
    if not photos:
        return []
    bb = photos[0].backbone
    if any(p.backbone is not bb for p in photos):
        raise MethodError("the photos of one batch must be prepared for the same backbone")
    t0 = time.perf_counter()
    # left to the prediction, the classes come from the method's own forward pass (see compute_cams)
    targets = resolve_classes(classes, bb.labels) if classes is not None and len(classes) else None
    versus_idx = resolve_classes([versus], bb.labels)[0] if versus is not None else None
    linear = bb.head(method)  # checks the method's name; None where the method does not use the head
    if METHODS[method].needs_head and linear is None:
        raise MethodError(f"the closed-form CAM needs a global-average-pool + linear head; {bb.name} has none")
    x = torch.cat([p.x for p in photos]) if len(photos) > 1 else photos[0].x
    out = compute_cams(
        bb.model,
        x,
        targets,
        method,
        layer or bb.spec.target_layer,
        contrast,
        versus_idx,
        linear,
        top_k=top_k,
        **options,
    )
    t1 = time.perf_counter()
    assert out.classes is not None  # compute_cams always sets them
    probs = bb.probabilities(out.logits, dim=1).detach().cpu().numpy().astype(np.float32)
    raw = out.raw.detach().float().cpu().numpy()
    attributions = out.attributions.float().cpu().numpy() if out.attributions is not None else None
    signed = out.signed.cpu().numpy() if out.signed is not None else None
    shown = contrast or (("pair" if versus_idx is not None else "group") if method == "contrastive" else None)
    t2 = time.perf_counter()
    # prepared photos: no loading or preprocessing here (callers that prepared them may fill these in)
    timings = {"load": 0.0, "preprocess": 0.0, **out.timings, "cams": t1 - t0, "to_numpy": t2 - t1, "total": t2 - t0}
    if len(photos) > 1:
        timings["batch"] = len(photos)  # the engine's timings are the whole batch's
    result = []
    for i, p in enumerate(photos):
        chosen = out.classes[i].tolist()
        result.append(
            Explanation(
                image=p.image,
                classes=chosen,
                class_names=[bb.labels[c] for c in chosen],
                method=method,
                backbone=bb.name,
                raw_maps=raw[i],
                probs=probs[i],
                target_layer=out.layer,
                input_tensor=p.x,
                crop_box=p.crop_box,
                labels=bb.labels,
                attributions=attributions[i] if attributions is not None else None,
                signed_maps=signed[i] if signed is not None else None,
                contrast=shown,
                timings=dict(timings),
            )
        )
    return result


def _name(backbone: str | Backbone) -> str:
    return backbone.name if isinstance(backbone, Backbone) else backbone
