"""Text tied to the map: which trait sentence to show first, from where the contrast map lies on the trait parts.

A trait can only be located on a photo that has part boxes (galleries/traits/, found by its pixels): the
annotated fixture photos. For any other photo, an upload included, the traits keep their usual order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from teaching import metrics
from teaching.api import Explanation, Prepared
from teaching.galleries import Group, Species
from teaching.galleries.traits import TraitBox, boxes_of_image

# A trait leads when the species' contrast map puts at least this share of its top-20% mass on the trait's part
# and at least CLEAR_RATIO times the part's share of the crop (what a map spread evenly would put there).
# Chosen from the measurements in docs/EVALUATION.md ("Trait pointing").
CLEAR_MASS = 0.4
CLEAR_RATIO = 2.0


def trait_masses(boxes: Sequence[TraitBox], m: np.ndarray, crop_box: Sequence[float]) -> dict[int, tuple[float, float]]:
    """trait index -> (share of the map's top-20% mass on the trait's part boxes, the part's share of the crop).

    `m` is the map over the crop the model saw, (h, w); the boxes are in the photo's pixels.
    """
    h, w = m.shape
    x0, y0, x1, y1 = (float(v) for v in crop_box)
    scale = torch.tensor([w / (x1 - x0), h / (y1 - y0)] * 2)
    out: dict[int, tuple[float, float]] = {}
    mt = torch.from_numpy(np.ascontiguousarray(m)).float()
    seeded = torch.Generator().manual_seed(0)  # orders tied pixels the same way every time
    weight = metrics.top_weight(mt, generator=seeded)  # once for every trait: `trait_pointing`'s mass
    for trait in sorted({b.trait for b in boxes}):
        parts = torch.tensor([b.box for b in boxes if b.trait == trait]) - torch.tensor([x0, y0, x0, y0])
        mask = metrics.box_mask(parts * scale, h, w)
        out[trait] = (float((weight * mask).sum() / weight.sum()), float(mask.float().mean()))
    return out


def lead_trait(boxes: Sequence[TraitBox], m: np.ndarray, crop_box: Sequence[float]) -> int | None:
    """The trait whose part the map covers most, when it covers it clearly (CLEAR_MASS, CLEAR_RATIO); else None."""
    masses = trait_masses(boxes, m, crop_box)
    if not masses:
        return None
    trait = max(masses, key=lambda t: masses[t][0])
    mass, area = masses[trait]
    return trait if mass >= CLEAR_MASS and mass >= CLEAR_RATIO * area else None


def ordered_traits(species: Species, lead: int | None, lang: str = "en") -> tuple[str, ...]:
    """The species' trait sentences in `lang`, the lead trait first (the usual order when there is none)."""
    traits = species.trait_list(lang)
    if lead is None:
        return traits
    return (traits[lead], *(t for i, t in enumerate(traits) if i != lead))


def find_lead(
    group: Group, prepared: Prepared, contrast: Explanation, top_index: int, trusted: bool
) -> tuple[str, int] | None:
    """(species id, trait index) of the trait the explore page shows first, or None for the usual order.

    Only the species the model names (`top_index`, when its answer is `trusted`) can get a lead trait, and only on
    a photo with part boxes (found by its pixels, so this runs once per request, whatever the languages shown).
    """
    parts = boxes_of_image(group.id, prepared.image) if trusted else ()
    if not parts or top_index not in group.class_indices:
        return None
    species = group.species_by_index(top_index)
    side = prepared.x.shape[-1]
    m = contrast.crop_maps((side, side))[group.class_indices.index(top_index)]
    lead = lead_trait([b for b in parts if b.species_id == species.id], m, contrast.crop_box)
    return None if lead is None else (species.id, lead)


def explore_traits(group: Group, lead: tuple[str, int] | None, lang: str = "en") -> dict[str, tuple[str, ...]]:
    """species id -> its trait sentences (in `lang`) in the order the explore page shows them (`find_lead`)."""
    return {s.id: ordered_traits(s, lead[1] if lead and lead[0] == s.id else None, lang) for s in group.species}
