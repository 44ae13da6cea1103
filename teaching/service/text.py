"""How the pages write numbers in their sentences and captions."""

from __future__ import annotations


def percent(p: float) -> str:
    """A probability as a percentage with one decimal ("90.6%"), or "<0.1%" below a thousandth."""
    return f"{p:.1%}" if p >= 0.001 else "<0.1%"
