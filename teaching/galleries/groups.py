"""Species groups: the group files, their look-alike species, trait sentences and gallery photos with credits.

A group file (``galleries/<id>.toml``, see docs/GALLERIES.md) names look-alike ImageNet classes, two to four trait
sentences per species that a learner can check on a photo, and the photos of its gallery: Flickr photos with
their credit and a relative crop box, or Wikimedia Commons files whose author and licence are read from the
Commons API when they are downloaded (see ``teaching.galleries.download``).

Photos come from the local folder ``TEACHING_GALLERY_DIR`` when it is set (one sub-folder per species
``fixture_folder``), otherwise from the cache that ``python -m teaching.galleries download`` fills
(``TEACHING_CACHE_DIR``, default ``~/.cache/teaching/galleries``).
"""

from __future__ import annotations

import csv
import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import tomllib

from teaching.errors import TeachingError

GALLERY_DIR = Path(__file__).resolve().parents[2] / "galleries"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FULL_FRAME = (0.0, 0.0, 1.0, 1.0)
NOT_DOWNLOADED = "not downloaded yet (run: python -m teaching.galleries download)"
CREDIT_FIELDS = ("url", "landing_page", "author", "author_url", "license", "license_url", "sha256")

Source = Literal["flickr", "commons", "local"]


class GalleryError(TeachingError):
    """A gallery file is malformed, or one photo cannot be used (names the file or photo and the problem)."""


@dataclass(frozen=True)
class Photo:
    """One gallery photo and what its credit line needs."""

    id: str  # unique over all groups; names the cached file
    species_id: str
    source: Source
    url: str = ""  # image URL (flickr; commons once downloaded) or file path (local)
    landing_page: str = ""  # the page the credit links to
    author: str = ""
    author_url: str = ""
    license: str = ""  # short licence name, e.g. "CC BY 2.0"
    license_url: str = ""
    crop: tuple[float, float, float, float] = FULL_FRAME  # relative box x1, y1, x2, y2
    commons_file: str = ""  # file name on Wikimedia Commons, without "File:"
    sha256: str = ""  # of the cached JPEG, once downloaded


@dataclass(frozen=True)
class Species:
    """One ImageNet class of a group, with the traits a learner can check on a photo."""

    id: str  # snake_case, e.g. "african_elephant"
    name: str  # display name
    imagenet_index: int  # 0-based (torchvision/timm order)
    traits: tuple[str, ...]  # 2-4 short sentences
    fixture_folder: str  # folder name under a local photo folder such as fixtures/species
    photos: tuple[Photo, ...] = ()
    commons_categories: tuple[str, ...] = ()  # Wikimedia Commons categories whose free photos join the gallery
    name_zh: str = ""  # Simplified Chinese name ("" falls back to `name`)
    traits_zh: tuple[str, ...] = ()  # the traits in Simplified Chinese, same order (empty falls back to `traits`)

    def label(self, lang: str = "en") -> str:
        """The display name in a language ("en" or "zh")."""
        return self.name_zh if lang == "zh" and self.name_zh else self.name

    def trait_list(self, lang: str = "en") -> tuple[str, ...]:
        """The trait sentences in a language ("en" or "zh")."""
        return self.traits_zh if lang == "zh" and self.traits_zh else self.traits


@dataclass(frozen=True)
class Group:
    """Look-alike species taught together."""

    id: str
    title: str
    intro: str
    species: tuple[Species, ...]
    caveat: str = ""  # what the maps cannot be trusted to show for this group (measured), shown with every map
    title_zh: str = ""  # the Simplified Chinese texts ("" falls back to the English ones)
    intro_zh: str = ""
    caveat_zh: str = ""

    def text(self, field: str, lang: str = "en") -> str:
        """`title`, `intro` or `caveat` in a language ("en" or "zh")."""
        english = str(getattr(self, field))
        return (str(getattr(self, f"{field}_zh")) or english) if lang == "zh" else english

    @property
    def class_indices(self) -> tuple[int, ...]:
        """The ImageNet indices of the species, in group order."""
        return tuple(s.imagenet_index for s in self.species)

    def species_by_index(self, index: int) -> Species:
        """The species with this ImageNet index; GalleryError when the group has none."""
        for species in self.species:
            if species.imagenet_index == index:
                return species
        raise GalleryError(f"group '{self.id}' has no species with ImageNet index {index}")

    def species_by_id(self, species_id: str) -> Species:
        """The species with this id; GalleryError when the group has none."""
        for species in self.species:
            if species.id == species_id:
                return species
        raise GalleryError(f"group '{self.id}' has no species '{species_id}'")


class GalleryImage(NamedTuple):
    """A gallery photo ready to show, or the reason it is missing."""

    species_id: str
    path: Path | None  # None when the photo is missing
    credit: str
    link: str
    missing: str | None  # why there is no file; None when path is set


def _get(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    value = table.get(key, default)
    if value is None:
        raise GalleryError(f"{where}: '{key}' is missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise GalleryError(f"{where}: '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def _no_unknown_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise GalleryError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")


def _photo(table: Mapping[str, Any], species_id: str, base: Path, where: str) -> Photo:
    where = f"{where}: photo '{table.get('id', '?')}'"
    _no_unknown_keys(table, [f for f in Photo.__dataclass_fields__ if f not in ("species_id", "sha256")], where)
    fields = {key: _get(table, key, str, where, "") for key in CREDIT_FIELDS[:-1] + ("commons_file",)}
    source = _get(table, "source", str, where)
    required = {"flickr": ("url", "landing_page", "author", "license"), "commons": ("commons_file",), "local": ("url",)}
    if source not in required:
        raise GalleryError(f"{where}: source must be flickr, commons or local, got '{source}'")
    for key in required[source]:
        if not fields[key]:
            raise GalleryError(f"{where}: a {source} photo needs '{key}'")
    second_hand = [key for key in ("url", "author", "author_url", "license", "license_url") if fields[key]]
    if source == "commons" and second_hand:
        raise GalleryError(f"{where}: remove '{second_hand[0]}': Commons credits are read from the Commons API")
    crop = _get(table, "crop", list, where, list(FULL_FRAME))
    if len(crop) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in crop):
        raise GalleryError(f"{where}: crop must be four numbers x1, y1, x2, y2")
    x1, y1, x2, y2 = (float(v) for v in crop)
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise GalleryError(f"{where}: crop {crop} must satisfy 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1")
    if source == "commons" and not fields["landing_page"]:
        fields["landing_page"] = "https://commons.wikimedia.org/wiki/File:" + urllib.parse.quote(fields["commons_file"])
    if source == "local":
        fields["url"] = str((base / fields["url"]).resolve())
    return Photo(_get(table, "id", str, where), species_id, source, crop=(x1, y1, x2, y2), **fields)


def _species(table: Mapping[str, Any], base: Path, where: str) -> Species:
    where = f"{where}: species '{table.get('id', '?')}'"
    _no_unknown_keys(table, Species.__dataclass_fields__, where)
    species_id = _get(table, "id", str, where)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", species_id):
        raise GalleryError(f"{where}: id must be snake_case")
    index = _get(table, "imagenet_index", int, where)
    if not 0 <= index <= 999:
        raise GalleryError(f"{where}: imagenet_index {index} is outside 0..999")
    traits = _get(table, "traits", list, where)
    if not 2 <= len(traits) <= 4 or not all(isinstance(t, str) and t.strip() for t in traits):
        raise GalleryError(f"{where}: traits must be 2 to 4 sentences, got {len(traits)}")
    photos = tuple(_photo(p, species_id, base, where) for p in _get(table, "photos", list, where, []))
    name, folder = _get(table, "name", str, where), _get(table, "fixture_folder", str, where)
    categories = _get(table, "commons_categories", list, where, [])
    if not all(isinstance(c, str) and c.strip() for c in categories):
        raise GalleryError(f"{where}: commons_categories must be a list of category names")
    traits_zh = _get(table, "traits_zh", list, where, [])
    if traits_zh and (len(traits_zh) != len(traits) or not all(isinstance(t, str) and t.strip() for t in traits_zh)):
        raise GalleryError(f"{where}: traits_zh must translate the {len(traits)} traits, got {len(traits_zh)}")
    name_zh = _get(table, "name_zh", str, where, "")
    return Species(
        species_id,
        name,
        index,
        tuple(traits),
        folder,
        photos,
        tuple(c.strip() for c in categories),
        name_zh,
        tuple(traits_zh),
    )


def load_group(path: Path) -> Group:
    """Read and check one group file; GalleryError names the file and the problem."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise GalleryError(f"{where}: cannot read the group file ({e})") from e
    _no_unknown_keys(data, Group.__dataclass_fields__, where)
    species = tuple(_species(s, Path(path).parent, where) for s in _get(data, "species", list, where))
    if len(species) < 2:
        raise GalleryError(f"{where}: a group needs at least two species")
    for attr in ("id", "imagenet_index"):
        values = [getattr(s, attr) for s in species]
        duplicates = sorted({str(v) for v in values if values.count(v) > 1})
        if duplicates:
            raise GalleryError(f"{where}: species {attr} {duplicates[0]} appears twice")
    title, intro = _get(data, "title", str, where), _get(data, "intro", str, where)
    caveat = _get(data, "caveat", str, where, default="")
    zh = {f"{key}_zh": _get(data, f"{key}_zh", str, where, "") for key in ("title", "intro", "caveat")}
    return Group(_get(data, "id", str, where), title, intro, species, caveat, **zh)


def load_groups(directory: Path | None = None) -> dict[str, Group]:
    """All groups of a folder of ``*.toml`` files (default: the repository's galleries/), keyed by group id."""
    directory = Path(directory) if directory is not None else GALLERY_DIR
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise GalleryError(f"{directory}: no group files (*.toml) found")
    groups: dict[str, Group] = {}
    photo_files: dict[str, Path] = {}
    for path in files:
        group = load_group(path)
        if group.id in groups:
            raise GalleryError(f"{path}: group id '{group.id}' is already used by another file")
        for photo in (p for s in group.species for p in s.photos):
            if photo.id in photo_files:
                raise GalleryError(f"{path}: photo id '{photo.id}' is already used in {photo_files[photo.id]}")
            photo_files[photo.id] = path
        groups[group.id] = group
    return groups


def credit(photo: Photo) -> str:
    """One credit line, e.g. "Photo: Marco Verch, CC BY 2.0, cropped (https://www.flickr.com/...)"."""
    parts = [f"Photo: {photo.author or ('Wikimedia Commons' if photo.source == 'commons' else 'unknown author')}"]
    if photo.license:
        parts.append(photo.license)
    elif photo.source == "commons":
        parts.append("licence not checked yet")
    if photo.crop != FULL_FRAME:
        parts.append("cropped")
    text = ", ".join(parts)
    return f"{text} ({photo.landing_page})" if photo.landing_page else text


def species_groups() -> dict[str, tuple[int, ...]]:
    """The look-alike groups of the repository's galleries/, group id -> ImageNet indices (group file order)."""
    return {group.id: group.class_indices for group in load_groups().values()}


def default_cache_dir() -> Path:
    """The download cache: env TEACHING_CACHE_DIR, default ~/.cache/teaching/galleries."""
    return Path(os.environ.get("TEACHING_CACHE_DIR") or Path.home() / ".cache" / "teaching" / "galleries")


def gallery_photos(group: Group, cache_dir: Path | None = None) -> list[GalleryImage]:
    """The photos of a group, from TEACHING_GALLERY_DIR when set, else from the download cache."""
    local = os.environ.get("TEACHING_GALLERY_DIR")
    if local:
        return _local_images(group, Path(local))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entries = read_manifest(cache)
    images = []
    for species in group.species:
        if not species.photos:
            images.append(GalleryImage(species.id, None, "", "", "no photos listed for this species"))
        for photo in species.photos:
            entry = entries.get(photo.id, {})
            path = Path(photo.url) if photo.source == "local" else cache / str(entry.get("file", ""))
            if (photo.source == "local" or entry.get("file")) and path.is_file():
                updates: dict[str, Any] = {k: str(entry[k]) for k in CREDIT_FIELDS if k in entry}
                known = replace(photo, **updates)
                images.append(GalleryImage(species.id, path, credit(known), known.landing_page, None))
            else:
                reason = "file not found" if photo.source == "local" else entry.get("missing", NOT_DOWNLOADED)
                images.append(GalleryImage(species.id, None, credit(photo), photo.landing_page, str(reason)))
        images += _category_images(species, entries, cache)
    return images


def _category_images(species: Species, entries: Mapping[str, dict[str, Any]], cache: Path) -> list[GalleryImage]:
    """The downloaded photos of the species' Commons categories (manifest entries carrying its species id)."""
    if not species.commons_categories:
        return []
    listed = {p.id for p in species.photos}
    images = []
    for photo_id, entry in sorted(entries.items()):
        path = cache / str(entry.get("file", ""))
        if entry.get("species_id") != species.id or photo_id in listed or not entry.get("file") or not path.is_file():
            continue
        fields: dict[str, Any] = {k: str(entry[k]) for k in CREDIT_FIELDS if k in entry}
        file = str(entry.get("wanted", {}).get("commons_file", ""))
        known = replace(Photo(photo_id, species.id, "commons", commons_file=file), **fields)
        images.append(GalleryImage(species.id, path, credit(known), known.landing_page, None))
    return images


def _local_images(group: Group, root: Path) -> list[GalleryImage]:
    credits: dict[str, tuple[str, str]] = {}
    if (root / "SOURCES.tsv").is_file():
        with open(root / "SOURCES.tsv", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                repo, note = row.get("repo") or "", (row.get("license_note") or "").split(" | ")[0]
                link = f"https://github.com/{repo}" if re.fullmatch(r"[\w.-]+/[\w.-]+", repo) else ""
                credits[row.get("file") or ""] = (": ".join(t for t in (repo, note) if t) or "local photo", link)
    images = []
    for species in group.species:
        folder = root / species.fixture_folder
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            images.append(GalleryImage(species.id, None, "", "", f"no photos in {folder}"))
        for path in files:
            text, link = credits.get(f"{species.fixture_folder}/{path.name}", ("local photo", ""))
            images.append(GalleryImage(species.id, path, text, link, None))
    return images


def read_manifest(cache: Path) -> dict[str, dict[str, Any]]:
    """Photo id -> manifest entry of a download cache; empty when the cache has no readable manifest."""
    try:
        photos = json.loads((cache / "manifest.json").read_text(encoding="utf-8")).get("photos", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return photos if isinstance(photos, dict) else {}
