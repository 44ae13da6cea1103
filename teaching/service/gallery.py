"""The gallery beside the Explore page: the photos of a group with their credits, and where they come from.

Photos come from a local folder (TEACHING_GALLERY_DIR) or the download cache, which a background thread fills at
start-up; a photo that cannot be fetched is listed as missing with the reason, and uploads work all the same.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from teaching.errors import TeachingError
from teaching.galleries import default_cache_dir, download_gallery, gallery_photos
from teaching.pool import group_pool, verdict_note
from teaching.service.groups import get_group, groups
from teaching.service.text import NO_NETWORK, credit_text, download_failed, say

log = logging.getLogger(__name__)
_logged: set[tuple[str, str]] = set()  # (group, reason) already written to the server log


@dataclass
class GalleryView:
    """The photos of a group that can be shown, and what is missing."""

    photos: list[tuple[Path, str]]  # (file, caption: species and credit)
    links: list[str]  # the credit's link of each photo ("" when none), same order
    credits: str  # Markdown list: one credit line per photo, with its link
    missing: str  # one sentence on the photos that are not available ("" when none)
    species: list[str] = field(default_factory=list)  # the species id of each photo, same order
    short: str = ""  # one short line for the page on what is missing ("" when none); the reasons go to the log


def gallery(group_id: str, lang: str = "en") -> GalleryView:
    """The gallery of a group: local photos (TEACHING_GALLERY_DIR) or the download cache, with credits.

    The reasons of missing photos are written once per group and reason to the server log (`logging`, with the
    count of photos); the captions, the credit lines and `short` (the one line a page shows) are in `lang`, the
    credits' names, licences and links as they are."""
    group = get_group(group_id)
    names = {s.id: s.label(lang) for s in group.species}
    photos, links, lines, species = [], [], [], []
    missing: dict[str, list[str]] = {}  # reason -> species names, one entry per missing photo
    for item in gallery_photos(group):
        if item.path is None:
            missing.setdefault(str(item.missing), []).append(names[item.species_id])
            continue
        shown = credit_text(item.credit, lang)
        photos.append((item.path, say("caption", lang, name=names[item.species_id], credit=shown)))
        species.append(item.species_id)
        links.append(item.link)
        credit = f"[{shown}]({item.link})" if item.link else shown
        lines.append(say("credit_line", lang, n=len(photos), name=names[item.species_id], credit=credit))
    text = short = ""
    for reason, who in missing.items():
        if (group.id, reason) not in _logged:
            _logged.add((group.id, reason))
            log.warning("gallery %s: %d photo(s) missing: %s", group.id, len(who), reason)
    if download_failed(list(missing)):
        text, short = NO_NETWORK, say("no_network", lang)
    elif missing:
        short = say("missing_photos", lang, count=sum(len(v) for v in missing.values()))
        count = sum(len(v) for v in missing.values())
        reasons = [f"{', '.join(dict.fromkeys(species))}: {reason}" for reason, species in missing.items()]
        text = f"{count} photo{'s' if count > 1 else ''} of this group cannot be shown. " + "; ".join(reasons)
        text += ". Uploads always work."
    return GalleryView(photos, links, "\n".join(lines), text, species, short)


def download_galleries_in_background() -> threading.Thread | None:
    """Fetch the gallery photos that are not cached yet, in a daemon thread; None when there is nothing to do.

    Nothing is fetched when TEACHING_GALLERY_DIR points at a local folder or TEACHING_NO_DOWNLOAD=1. A photo that
    cannot be fetched (no network, a licence that is not free) is recorded in the cache's manifest, and the
    gallery says why it is missing; uploads work all the same.
    """
    if os.environ.get("TEACHING_GALLERY_DIR") or os.environ.get("TEACHING_NO_DOWNLOAD") == "1":
        return None
    thread = threading.Thread(target=_download_and_judge, name="gallery-download", daemon=True)
    thread.start()
    return thread


def photo_dirs() -> list[Path]:
    """The folders gallery photos are read from (a web server must be allowed to serve them)."""
    local = os.environ.get("TEACHING_GALLERY_DIR")
    return [Path(local).resolve()] if local else [default_cache_dir().resolve()]


def _download_and_judge() -> None:
    """Download the galleries, then compute the model's verdict on each photo once (cached with the photos)."""
    download_gallery(groups())
    for group_id in groups():
        try:
            gallery_notes(group_id)
        except (TeachingError, OSError) as e:
            log.warning("could not judge the photos of %s: %s", group_id, e)


def gallery_notes(group_id: str) -> dict[Path, str]:
    """Photo -> an honest note for each gallery photo the model gets wrong within the group (none for the rest):
    "This photo is a tusker; the model says an African elephant (79% of the group)." (`teaching.pool`)."""
    group = get_group(group_id)
    return {p.path: note for p in group_pool(group, gallery_photos(group)) if (note := verdict_note(group, p.verdict))}
