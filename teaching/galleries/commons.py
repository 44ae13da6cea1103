"""A photo pool that grows: the files of Wikimedia Commons categories listed per species in the group files.

A species may list ``commons_categories = ["Loxodonta africana"]``. One MediaWiki API query per batch lists the
category's files with their image info (``generator=categorymembers`` with ``gcmtype=file``, ``prop=imageinfo``
with ``iiprop=url|extmetadata|mime|size``; documented at https://www.mediawiki.org/wiki/API:Categorymembers and
https://www.mediawiki.org/wiki/API:Imageinfo): ``{"query": {"pages": {"<pageid>": {"title": "File:...",
"imageinfo": [{"url", "descriptionurl", "thumburl", "mime", "size", "width", "height", "extmetadata": {...}}]}}},
"continue": {"gcmcontinue": ..., "continue": ...}}``. Only JPEG and PNG files under a free licence (public domain,
CC0, CC BY, CC BY-SA, checked by `licence_problem` on extmetadata's LicenseShortName and License) are kept, at most
``MAX_PER_SPECIES`` per species with the group file's own photos counted.
"""

from __future__ import annotations

import html
import http.client
import json
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from teaching.galleries.groups import GalleryError, Photo, Species

COMMONS_API = "https://commons.wikimedia.org/w/api.php"
MAX_PER_SPECIES = 40
BATCH = 50  # gcmlimit: files per API answer
MAX_QUERIES = 4  # API answers read per category (continue), at most
MIMES = ("image/jpeg", "image/png")

Fetch = Callable[[str], bytes]


def licence_problem(short_name: str, code: str = "") -> str | None:
    """None when a licence is free (public domain, CC0, CC BY, CC BY-SA), else why the photo is refused."""
    name = short_name.strip() or code.strip()
    key = re.sub(r"[\s_]+", "-", (code.strip() or short_name.strip()).lower())
    if not name:
        return "no licence given"
    if re.search(r"(^|-)(nc|nd)(-|$)", key) or re.search(r"\b(NC|ND)\b", short_name):
        return f"licence {name} is not free (NonCommercial or NoDerivatives)"
    if key.startswith(("pd", "cc0", "cc-zero", "public-domain")) or re.fullmatch(r"cc-by(-sa)?(-[\d.]+)?(-\w+)?", key):
        return None
    return f"licence {name} is not public domain, CC0, CC BY or CC BY-SA"


def strip_html(text: str) -> str:
    """Plain text of an HTML fragment such as the Commons Artist field."""
    return " ".join(html.unescape(re.sub(r"<[^>]*>", " ", text)).split())


def _fetch(url: str, fetch: Fetch, what: str = "") -> bytes:
    try:
        return fetch(url)
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise GalleryError(f"could not download {what or url} ({getattr(e, 'reason', None) or e})") from e


def category_query(category: str, width: int, cont: dict[str, str] | None = None) -> str:
    """The API URL listing one batch of the category's files with their image info."""
    query = {
        "action": "query",
        "format": "json",
        "generator": "categorymembers",
        "gcmtitle": f"Category:{category.removeprefix('Category:')}",
        "gcmtype": "file",
        "gcmlimit": str(BATCH),
        "prop": "imageinfo",
        "iiprop": "url|extmetadata|mime|size",
        "iiurlwidth": str(width),
    } | (cont or {})
    return COMMONS_API + "?" + urllib.parse.urlencode(query)


def page_info(page: dict[str, Any]) -> dict[str, str]:
    """URLs, licence and author of one page of an imageinfo answer (the fields the manifest keeps)."""
    info = page["imageinfo"][0]
    meta = info.get("extmetadata", {})
    value = {key: str(meta.get(key, {}).get("value", "")) for key in ("LicenseShortName", "License", "LicenseUrl")}
    artist = str(meta.get("Artist", {}).get("value", ""))
    urls = {"url": str(info["url"]), "thumb_url": str(info.get("thumburl", "")), "page": info.get("descriptionurl", "")}
    extra = {"mime": str(info.get("mime", "")), "size": str(info.get("size", ""))}
    return (
        {"title": page.get("title", "")} | urls | {"artist_html": artist, "author": strip_html(artist)} | value | extra
    )


def photo_id(title: str) -> str:
    """A stable photo id for a Commons file: "commons-" and the file name in lower-case words."""
    name = title.removeprefix("File:").rsplit(".", 1)[0]
    return "commons-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "file")


def category_photos(
    species: Species, fetch: Fetch, width: int, limit: int = MAX_PER_SPECIES
) -> tuple[list[tuple[Photo, dict[str, str]]], list[str]]:
    """Up to `limit` free photos of the species' categories (files the group file lists are not repeated), each
    with its API record; and the reasons files or categories were left out (for the log)."""
    listed = {p.commons_file.replace("_", " ") for p in species.photos if p.commons_file}
    wanted = limit - len(species.photos)
    found: list[tuple[Photo, dict[str, str]]] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for category in species.commons_categories:
        cont: dict[str, str] | None = None
        for _ in range(MAX_QUERIES):
            if len(found) >= wanted:
                break
            try:
                data = json.loads(_fetch(category_query(category, width, cont), fetch, f"Category:{category}"))
            except (GalleryError, ValueError) as e:
                skipped.append(f"Category:{category}: {e}")
                break
            if "error" in data:
                skipped.append(f"Category:{category}: {data['error'].get('info', data['error'])}")
                break
            pages = sorted(data.get("query", {}).get("pages", {}).values(), key=lambda p: str(p.get("title", "")))
            for page in pages:
                title = str(page.get("title", ""))
                if len(found) >= wanted or not page.get("imageinfo") or title in seen:
                    continue
                seen.add(title)
                api = page_info(page)
                problem = licence_problem(api["LicenseShortName"], api["License"])
                if api["mime"] not in MIMES:
                    problem = f"{api['mime'] or 'unknown type'} is not a photo"
                if problem or title.removeprefix("File:") in listed:
                    skipped.append(f"{title}: {problem or 'already listed'}")
                    continue
                file = title.removeprefix("File:").replace(" ", "_")
                found.append((Photo(photo_id(title), species.id, "commons", commons_file=file), api))
            cont = data.get("continue")
            if not cont:
                break
    return found, skipped
