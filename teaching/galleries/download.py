"""Downloading the gallery photos into the cache: HTTP, the Commons API, licence checks, cropping, the manifest.

Flickr photos are fetched from their URL with the credit the group file gives; for a Wikimedia Commons file the
author and licence are read from the Commons API, and only public domain, CC0, CC BY and CC BY-SA are kept.
Each photo is saved cropped as a JPEG of at most MAX_SIDE pixels a side; ``manifest.json`` in the cache records
its sha256, its credit and what the Commons API returned, or why the photo is missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from teaching.galleries.commons import (
    COMMONS_API,
    MAX_PER_SPECIES,
    _fetch,
    category_photos,
    licence_problem,
    page_info,
)
from teaching.galleries.groups import CREDIT_FIELDS, GalleryError, Group, Photo, default_cache_dir, read_manifest

log = logging.getLogger(__name__)
MAX_SIDE = 1024  # longest side of a cached photo, in pixels
MAX_BYTES = 60_000_000  # largest download accepted
USER_AGENT = "teaching-gradcam/0.1 (machine teaching gallery downloader; Python urllib)"

Fetch = Callable[[str], bytes]  # URL -> response body
Progress = Callable[[int, int, str], None]  # (done, total, photo id)


def fetch_url(url: str) -> bytes:
    """GET a URL with urllib (a User-Agent as Wikimedia asks, a timeout and a size cap)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=30) as response:
        body: bytes = response.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise GalleryError(f"{url} is larger than {MAX_BYTES // 1_000_000} MB")
    return body


def commons_info(file_name: str, fetch: Fetch) -> dict[str, str]:
    """What the Commons API says about a file: URLs, licence and author (raw and plain)."""
    query = {"action": "query", "titles": f"File:{file_name}", "prop": "imageinfo", "format": "json"}
    query |= {"iiprop": "url|extmetadata", "iiurlwidth": str(MAX_SIDE)}
    data = json.loads(
        _fetch(COMMONS_API + "?" + urllib.parse.urlencode(query), fetch, f"the Commons record of {file_name}")
    )
    if "error" in data:
        raise GalleryError(f"Commons API error for {file_name}: {data['error'].get('info', data['error'])}")
    page: dict[str, Any] = next(iter(data.get("query", {}).get("pages", {}).values()), {})
    if "missing" in page or "invalid" in page or not page.get("imageinfo"):
        raise GalleryError(f"Commons has no file '{file_name}'")
    return page_info(page)


def _prepare(data: bytes, crop: tuple[float, float, float, float]) -> bytes:
    """Decode, apply EXIF rotation and the relative crop, shrink to MAX_SIDE, encode as JPEG."""
    with Image.open(io.BytesIO(data)) as raw:
        image = ImageOps.exif_transpose(raw).convert("RGB")
    w, h = image.size
    left, top = round(crop[0] * w), round(crop[1] * h)
    image = image.crop((left, top, max(left + 1, round(crop[2] * w)), max(top + 1, round(crop[3] * h))))
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _wanted(photo: Photo) -> dict[str, Any]:
    """What the group file asks for: a cached file made from something else is fetched again."""
    return {"source": photo.source, "url": photo.url, "commons_file": photo.commons_file, "crop": list(photo.crop)}


def _download(photo: Photo, cache: Path, fetch: Fetch, api: dict[str, str] | None = None) -> dict[str, Any]:
    """Fetch one photo into the cache; the manifest entry says what was saved or why it is missing.

    `api`: the file's Commons record when a category listing already gave it (not asked again)."""
    entry: dict[str, Any] = {"source": photo.source, "wanted": _wanted(photo)}
    try:
        fields = {key: getattr(photo, key) for key in CREDIT_FIELDS[:-1]}
        image_url = photo.url
        if photo.source == "commons":
            api = entry["commons_api"] = api or commons_info(photo.commons_file, fetch)
            problem = licence_problem(api["LicenseShortName"], api["License"])
            if problem:
                return entry | {"missing": problem}
            fields |= {"url": api["url"], "landing_page": api["page"] or photo.landing_page, "author": api["author"]}
            fields |= {"author_url": "", "license": api["LicenseShortName"], "license_url": api["LicenseUrl"]}
            image_url = api["thumb_url"] or api["url"]
        jpeg = _prepare(_fetch(image_url, fetch), photo.crop)
    except GalleryError as e:
        return entry | {"missing": str(e)}
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return entry | {"missing": f"not a usable image ({e})"}
    file = Path("images") / f"{photo.id}.jpg"
    (cache / file).parent.mkdir(parents=True, exist_ok=True)
    (cache / file).write_bytes(jpeg)
    return entry | fields | {"file": file.as_posix(), "sha256": hashlib.sha256(jpeg).hexdigest()}


def _is_cached(cache: Path, entry: Mapping[str, Any], photo: Photo) -> bool:
    path = cache / str(entry.get("file", ""))
    if not entry.get("file") or not path.is_file() or entry.get("wanted") != _wanted(photo):
        return False
    return hashlib.sha256(path.read_bytes()).hexdigest() == entry.get("sha256")


def download_gallery(
    groups: Iterable[Group] | Mapping[str, Group],
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    fetch: Fetch | None = None,
    per_species: int = MAX_PER_SPECIES,
) -> dict[str, str]:
    """Download the Flickr and Commons photos of the groups into the cache, keeping what is already there.

    Returns photo id -> "downloaded", "cached" or "missing: <reason>"; a failure never stops the other photos.
    The manifest (``manifest.json`` in the cache) records each file's sha256, its credit and what the Commons
    API returned.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    fetch = fetch or fetch_url
    chosen = list(groups.values() if isinstance(groups, Mapping) else groups)
    photos = [p for g in chosen for s in g.species for p in s.photos if p.source != "local"]
    entries = read_manifest(cache)
    status: dict[str, str] = {}
    for done, photo in enumerate(photos):
        if progress:
            progress(done, len(photos), photo.id)
        if _is_cached(cache, entries.get(photo.id, {}), photo):
            status[photo.id] = "cached"
            continue
        entries[photo.id] = entry = _download(photo, cache, fetch)
        status[photo.id] = f"missing: {entry['missing']}" if "missing" in entry else "downloaded"
    for species in (s for g in chosen for s in g.species if s.commons_categories):
        listed, skipped = category_photos(species, fetch, MAX_SIDE, per_species)
        for reason in skipped:
            log.info("%s: left out %s", species.id, reason)
        if not listed and skipped:
            log.warning("%s: no photos from its Commons categories (%s)", species.id, skipped[0])
        for photo, api in listed:
            if _is_cached(cache, entries.get(photo.id, {}), photo):
                status[photo.id] = "cached"
                continue
            entries[photo.id] = entry = _download(photo, cache, fetch, api) | {"species_id": species.id}
            status[photo.id] = f"missing: {entry['missing']}" if "missing" in entry else "downloaded"
    if progress:
        progress(len(photos), len(photos), "done")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "manifest.json").write_text(json.dumps({"photos": entries}, indent=1, sort_keys=True), encoding="utf-8")
    return status
