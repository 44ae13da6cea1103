"""Trait part boxes: where on a photo the part that a trait sentence names can be seen (an ear, a tusk, the hammer).

Data, not code: ``galleries/traits/<group id>.csv``, one row per box, with the columns

    photo,species,trait,part,x0,y0,x1,y1,pixels

``photo`` is the file relative to the species fixture folder (``../shared/fixtures/species``), ``species`` a
species id of the group, ``trait`` the 0-based index of the trait sentence in the species' ``traits`` list,
``part`` a word for the part, ``x0..y1`` the box in pixels of the stored photo, and ``pixels`` the SHA-256 of the
photo's decoded RGB pixels (`pixel_digest`), which finds the boxes of the same photo when it is shown again
(a photo without an entry here has no boxes: the traits of an uploaded photo cannot be located).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

from teaching.galleries.groups import GALLERY_DIR, GalleryError, Group, load_group

TRAIT_DIR = GALLERY_DIR / "traits"
COLUMNS = ("photo", "species", "trait", "part", "x0", "y0", "x1", "y1", "pixels")


@dataclass(frozen=True)
class TraitBox:
    """One box of a trait's part on one photo."""

    photo: str  # relative to the species fixture folder, e.g. "tusker/acuity_ILSVRC2012_val_00003650.JPEG"
    species_id: str
    trait: int  # index of the trait sentence in Species.traits
    part: str  # e.g. "ear", "tusk", "hammer"
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the photo's pixels
    pixels: str  # SHA-256 of the decoded RGB pixels (`pixel_digest`)


def pixel_digest(image: Image.Image) -> str:
    """SHA-256 of an image's size and RGB pixels: the same photo gives the same digest whatever its file name."""
    rgb = image.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def _row(row: dict[str, str], group: Group, where: str) -> TraitBox:
    missing = [c for c in COLUMNS if not (row.get(c) or "").strip()]
    if missing:
        raise GalleryError(f"{where}: '{missing[0]}' is missing")
    species = group.species_by_id(row["species"])
    try:
        trait = int(row["trait"])
        box = (float(row["x0"]), float(row["y0"]), float(row["x1"]), float(row["y1"]))
    except ValueError as exc:
        raise GalleryError(f"{where}: trait must be an integer and the box numbers ({exc})") from None
    if not 0 <= trait < len(species.traits):
        raise GalleryError(f"{where}: {species.id} has traits 0..{len(species.traits) - 1}, got {trait}")
    if not (0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
        raise GalleryError(f"{where}: the box must have 0 <= x0 < x1 and 0 <= y0 < y1, got {box}")
    return TraitBox(row["photo"], species.id, trait, row["part"], box, row["pixels"])


def read_trait_boxes(path: Path, group: Group) -> tuple[TraitBox, ...]:
    """The boxes of one trait file, checked against the group (species ids, trait indices, box corners)."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise GalleryError(f"{path.name}: expected the columns {','.join(COLUMNS)}")
        return tuple(_row(r, group, f"{path.name} line {i + 2}") for i, r in enumerate(reader))


@cache
def trait_boxes(group_id: str) -> tuple[TraitBox, ...]:
    """The trait boxes of a group (empty when the group has no trait file)."""
    path = TRAIT_DIR / f"{group_id}.csv"
    return read_trait_boxes(path, load_group(GALLERY_DIR / f"{group_id}.toml")) if path.is_file() else ()


def boxes_of_photo(group_id: str, photo: str) -> tuple[TraitBox, ...]:
    """The boxes of one photo, named as in the trait file (relative to the species fixture folder)."""
    return tuple(b for b in trait_boxes(group_id) if b.photo == photo)


def boxes_of_image(group_id: str, image: Image.Image) -> tuple[TraitBox, ...]:
    """The boxes of the annotated photo with the same pixels as `image` (empty for any other photo)."""
    boxes = trait_boxes(group_id)
    if not boxes:
        return ()
    digest = pixel_digest(image)
    return tuple(b for b in boxes if b.pixels == digest)
