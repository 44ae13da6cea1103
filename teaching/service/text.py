"""How the pages write numbers in their sentences and captions."""

from __future__ import annotations


def percent(p: float) -> str:
    """A probability as a percentage with one decimal ("90.6%"), or "<0.1%" below a thousandth."""
    return f"{p:.1%}" if p >= 0.001 else "<0.1%"


NO_NETWORK = "The gallery photos could not be downloaded (no network): upload a photo, or set TEACHING_GALLERY_DIR."


def download_failed(reasons: list[str]) -> bool:
    """True when a photo is missing because its download failed (the page then shows NO_NETWORK, the log the rest)."""
    return any(r.startswith("could not download") for r in reasons)
