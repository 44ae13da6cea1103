"""Species groups, their gallery photos with credits, and the download cache.

`groups` reads and checks the group files (``galleries/<id>.toml``, see docs/GALLERIES.md) and finds each
group's photos, in the local folder ``TEACHING_GALLERY_DIR`` or in the download cache; `download` fills that cache
(Flickr and Wikimedia Commons, free licences only); `cli` is ``python -m teaching.galleries download``.
"""

from __future__ import annotations

from teaching.galleries.cli import main
from teaching.galleries.commons import COMMONS_API, MAX_PER_SPECIES, category_photos, licence_problem, strip_html
from teaching.galleries.download import (
    MAX_BYTES,
    MAX_SIDE,
    USER_AGENT,
    Fetch,
    Progress,
    commons_info,
    download_gallery,
    fetch_url,
)
from teaching.galleries.groups import (
    CREDIT_FIELDS,
    FULL_FRAME,
    GALLERY_DIR,
    IMAGE_SUFFIXES,
    NOT_DOWNLOADED,
    GalleryError,
    GalleryImage,
    Group,
    Photo,
    Source,
    Species,
    credit,
    default_cache_dir,
    gallery_photos,
    load_group,
    load_groups,
    species_groups,
)

__all__ = [
    "COMMONS_API",
    "CREDIT_FIELDS",
    "FULL_FRAME",
    "GALLERY_DIR",
    "IMAGE_SUFFIXES",
    "MAX_BYTES",
    "MAX_PER_SPECIES",
    "MAX_SIDE",
    "NOT_DOWNLOADED",
    "USER_AGENT",
    "Fetch",
    "GalleryError",
    "GalleryImage",
    "Group",
    "Photo",
    "Progress",
    "Source",
    "Species",
    "category_photos",
    "commons_info",
    "credit",
    "default_cache_dir",
    "download_gallery",
    "fetch_url",
    "gallery_photos",
    "licence_problem",
    "load_group",
    "load_groups",
    "main",
    "species_groups",
    "strip_html",
]
