"""What the model makes of each gallery photo, computed once per photo and cached: the teacher's verdict and features.

For every photo (keyed by the sha256 of its file and the backbone) one forward pass gives
- the logits of the classes of every species group (``galleries/*.toml``),
- the pooled features before the classifier (what STRICT and EXPLAIN's learner model works in, `teaching.selection`),
- the class activation map (CAM, 9 x 9 for lite0 at 288 px) of each of those classes (EXPLAIN's "how easy the
  explanation is").
They are kept in ``facts-<backbone>.json`` in the download cache (``TEACHING_CACHE_DIR``), so a quiz or a gallery page
reads them instead of running the model per request.

The verdict: **the model is right about a photo of a group when, restricted to the group's classes, the true
species is the top-1 and holds at least half of the group's probability mass** (softmax over the group's logits,
p(true) >= RIGHT_MASS). Only such photos teach; the others may be test photos and are shown with an honest note.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from teaching.api import prepare
from teaching.cams import capture, eval_mode, find_layer
from teaching.errors import TeachingError
from teaching.galleries import GalleryImage, Group, default_cache_dir, load_groups
from teaching.models import DEFAULT_BACKBONE, load_backbone

RIGHT_MASS = 0.5  # the true species' share of the group's probability mass for the model to count as right
FACTS_VERSION = 1  # the file also records the backbone's input size: facts made at another size are not reused
_LOCK = threading.Lock()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhotoFacts:
    """What one forward pass says about one photo."""

    sha256: str
    logits: dict[int, float]  # ImageNet index -> logit, for the classes of every group
    features: np.ndarray  # float32 (D,) pooled features before the classifier
    cams: dict[int, np.ndarray]  # ImageNet index -> float32 (h, w) CAM at the last layer (before ReLU)


@dataclass(frozen=True)
class Verdict:
    """The model's answer for a photo of a group, restricted to the group's classes."""

    species_id: str  # the true species (the folder or group file says so)
    predicted_id: str  # the group's species the model ranks first
    p_true: float  # the true species' share of the group's probability mass
    p_predicted: float
    right: bool  # predicted_id == species_id and p_true >= RIGHT_MASS: the photo may teach


@dataclass(frozen=True)
class PoolPhoto:
    """A gallery photo with the verdict and what the learner model needs."""

    path: Path
    species_id: str
    verdict: Verdict
    features: np.ndarray
    explain_entropy: float  # entropy of the true species' contrastive CAM (EXPLAIN: low = easy to read)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def all_group_classes() -> tuple[int, ...]:
    """The ImageNet indices of every species of every group, sorted."""
    return tuple(sorted({i for g in load_groups().values() for i in g.class_indices}))


def facts_file(backbone: str = DEFAULT_BACKBONE, cache_dir: Path | None = None) -> Path:
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / f"facts-{backbone}.json"


def _encode(a: np.ndarray) -> str:
    return base64.b64encode(np.asarray(a, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").copy()


def _read(path: Path, size: int) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != FACTS_VERSION or data.get("size") != size:
        return {}
    photos = data.get("photos", {})
    return photos if isinstance(photos, dict) else {}


def _write(path: Path, photos: dict[str, Any], size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as f:
        json.dump({"version": FACTS_VERSION, "size": size, "photos": photos}, f, sort_keys=True)
    os.replace(f.name, path)


def _from_entry(sha: str, entry: dict[str, Any], classes: Iterable[int]) -> PhotoFacts | None:
    try:
        logits = {int(k): float(v) for k, v in entry["logits"].items()}
        shape = tuple(entry["cam_shape"])
        cams = {int(k): _decode(v).reshape(shape) for k, v in entry["cams"].items()}
        features = _decode(entry["features"])
    except (KeyError, TypeError, ValueError):
        return None
    if not set(classes) <= set(logits) or not set(classes) <= set(cams):
        return None
    return PhotoFacts(sha, logits, features, cams)


@torch.no_grad()
def compute_facts(path: Path, classes: Sequence[int], backbone: str = DEFAULT_BACKBONE) -> PhotoFacts:
    """One forward pass: logits, pooled features and per-class CAMs (GAP + linear head backbones only)."""
    bb = load_backbone(backbone)
    if not bb.spec.gap_linear:
        raise TeachingError(f"{backbone} has no global-average-pool + linear head: use {DEFAULT_BACKBONE}")
    prepared = prepare(path, bb)
    head = find_layer(bb.model, bb.spec.classifier)
    pooled: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: pooled.append(inputs[0].detach()))
    try:
        with eval_mode(bb.model), capture(find_layer(bb.model, bb.spec.target_layer), detach=False) as store:
            logits = bb.model(prepared.x)
    finally:
        hook.remove()
    activation = store[0][0].float().cpu().numpy()  # (C, h, w)
    weight = torch.as_tensor(head.weight).detach().float().cpu().numpy()  # (classes, C)
    idx = list(classes)
    cams = np.einsum("kc,chw->khw", weight[idx], activation).astype(np.float32)
    return PhotoFacts(
        file_sha256(path),
        {i: float(logits[0, i]) for i in idx},
        pooled[0][0].float().cpu().numpy().reshape(-1).astype(np.float32),
        {i: cams[n] for n, i in enumerate(idx)},
    )


def photo_facts(
    paths: Sequence[Path], backbone: str = DEFAULT_BACKBONE, cache_dir: Path | None = None
) -> list[PhotoFacts]:
    """The facts of each photo: read from the cache, computed (and cached) for the photos it lacks."""
    classes = all_group_classes()
    file = facts_file(backbone, cache_dir)
    with _LOCK:
        size = load_backbone(backbone).spec.preprocess.size
        entries = _read(file, size)
        out: list[PhotoFacts] = []
        changed = False
        for path in paths:
            sha = file_sha256(path)
            facts = _from_entry(sha, entries.get(sha, {}), classes)
            if facts is None:
                facts = compute_facts(path, classes, backbone)
                entries[sha] = {
                    "logits": {str(k): v for k, v in facts.logits.items()},
                    "features": _encode(facts.features),
                    "cams": {str(k): _encode(v) for k, v in facts.cams.items()},
                    "cam_shape": list(next(iter(facts.cams.values())).shape),
                    "file": Path(path).name,
                }
                changed = True
            out.append(facts)
        if changed:
            try:
                _write(file, entries, size)
            except OSError as e:  # a read-only cache still gives the facts, only not kept
                log.warning("could not write %s: %s", file, e)
    return out


def verdict(group: Group, species_id: str, facts: PhotoFacts, temperature: float = 1.0) -> Verdict:
    """The model's verdict on a photo of `species_id`, restricted to the group's classes (see the module doc), from
    the logits at the backbone's `temperature` (the probabilities the learner is shown)."""
    ids = [s.id for s in group.species]
    z = np.array([facts.logits[s.imagenet_index] for s in group.species], dtype=np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    top = int(np.argmax(p))
    true = ids.index(species_id)
    right = top == true and p[true] >= RIGHT_MASS
    return Verdict(species_id, ids[top], float(p[true]), float(p[top]), bool(right))


def explain_entropy(group: Group, species_id: str, facts: PhotoFacts) -> float:
    """EXPLAIN's difficulty of an explanation: entropy of the true species' group-contrast CAM scaled to [0, 1]
    (the map shifted to 0 and divided by its maximum, -mean(a log a), as in macaodha/explain_teach)."""
    true = group.species_by_id(species_id).imagenet_index
    others = [s.imagenet_index for s in group.species if s.id != species_id]
    m = facts.cams[true] - np.mean([facts.cams[o] for o in others], axis=0)
    m = m - m.min()
    a = m / m.max() + 1e-7 if m.max() > 0 else np.full_like(m, 1.0)
    return float(-(a * np.log(a)).mean())


def group_pool(
    group: Group, images: Sequence[GalleryImage], backbone: str = DEFAULT_BACKBONE, cache_dir: Path | None = None
) -> list[PoolPhoto]:
    """The group's photos that have a file, each with its verdict, features and explanation entropy."""
    present = [(img.path, img.species_id) for img in images if img.path is not None]
    facts = photo_facts([p for p, _ in present], backbone, cache_dir)
    temperature = load_backbone(backbone).spec.temperature
    return [
        PoolPhoto(Path(p), s, verdict(group, s, f, temperature), f.features, explain_entropy(group, s, f))
        for (p, s), f in zip(present, facts, strict=True)
    ]


def verdict_note(group: Group, v: Verdict) -> str:
    """One honest sentence for a gallery photo the model gets wrong ("" when it is right)."""
    if v.right:
        return ""
    true, said = group.species_by_id(v.species_id).name, group.species_by_id(v.predicted_id).name
    if v.predicted_id == v.species_id:
        return f"This photo is {_a(true)}; the model agrees but is unsure ({v.p_true:.0%} of the group)."
    return f"This photo is {_a(true)}; the model says {_a(said)} ({v.p_predicted:.0%} of the group)."


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
