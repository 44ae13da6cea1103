"""The photo every page starts from: an upload path, an image or an array, checked before the engine sees it.

A web server must not open any file a request names: `allowed_photo` resolves the path (symlinks too) and lets it
through only when it is a file inside one of the folders the front end serves photos from (its upload cache, the
gallery folders); every other path gets one and the same message, whatever exists there, so that a request cannot
probe the server's files by the error text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from teaching.errors import ImageError, echo
from teaching.images import load_image

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # largest photo file accepted (the app also gives it to launch(max_file_size))
DECODE_SIDE = 768  # large JPEGs are decoded at a reduced scale with sides still at least this long (models use <= 342)
NOT_AVAILABLE = "this photo is not available: upload it again"


def allowed_photo(path: str | os.PathLike[str] | None, folders: Iterable[str | os.PathLike[str]]) -> Path | None:
    """The resolved path of a photo a request names, when it is a file inside one of `folders`; None stays None.

    Raises:
        ImageError: NOT_AVAILABLE for any other path (outside the folders, missing, a folder, a device, unreadable),
            the same message whatever is there.
    """
    if path is None or (isinstance(path, str) and not path):
        return None
    try:
        resolved = Path(path).resolve(strict=True)
        roots = [Path(f).resolve() for f in folders]
        inside = any(resolved.is_relative_to(root) and resolved != root for root in roots)
        if inside and resolved.is_file():
            return resolved
    except (OSError, RuntimeError, ValueError, TypeError):  # missing, a symlink loop, a NUL in the path, not a path
        pass
    raise ImageError(NOT_AVAILABLE)


def read_photo(src: str | os.PathLike[str] | Image.Image | np.ndarray | None, name: str | None = None) -> Image.Image:
    """A photo from a path (an upload), an image or an array, checked: file size, format, pixel count, shape.

    A large JPEG is decoded at a reduced scale (sides at least DECODE_SIDE), enough for every model and every
    picture the pages show.

    Raises:
        ImageError: no photo, a file over MAX_UPLOAD_BYTES, or anything `load_image` refuses.
    """
    if src is None or (isinstance(src, str) and not src):
        raise ImageError("no photo: upload one or pick one from the gallery")
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        label = echo(name or path.name)
        if path.is_file() and path.stat().st_size > MAX_UPLOAD_BYTES:
            size_mb = path.stat().st_size / 1_048_576
            raise ImageError(f"{label}: file too large ({size_mb:.1f} MB, the limit is {MAX_UPLOAD_BYTES >> 20} MB)")
        return load_image(path, name=label, min_side=DECODE_SIDE)
    return load_image(src, name=name)
