"""The species groups the pages offer (elephants, sharks, butterflies), read once per process."""

from __future__ import annotations

from functools import lru_cache

from teaching.errors import echo
from teaching.galleries import GalleryError, Group, load_groups

DEFAULT_GROUP = "elephants"  # the group a page starts with (the first group when it does not exist)


@lru_cache(maxsize=1)
def groups() -> dict[str, Group]:
    """The species groups of the repository's galleries/, read once per process."""
    return load_groups()


def get_group(group_id: str) -> Group:
    """The group called `group_id`, or a GalleryError naming the known ones."""
    known = groups()
    if not isinstance(group_id, str) or group_id not in known:
        raise GalleryError(f"unknown species group {echo(group_id)!r}; choose one of {', '.join(known)}")
    return known[group_id]


def group_choices(lang: str = "en") -> list[tuple[str, str]]:
    """(title, id) of every group, for a dropdown; the titles in `lang` ("en" or "zh")."""
    return [(g.text("title", lang), g.id) for g in groups().values()]


def default_group() -> str:
    """The id of the group a page starts with."""
    return DEFAULT_GROUP if DEFAULT_GROUP in groups() else next(iter(groups()))


def species_names(lang: str) -> dict[int, str]:
    """ImageNet index -> the group's name for the species in `lang`, for the classes of every species group."""
    return {s.imagenet_index: s.label(lang) for g in groups().values() for s in g.species}
