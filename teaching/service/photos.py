"""The photo every page starts from: an upload path, an image or an array, checked before the engine sees it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from teaching.errors import ImageError
from teaching.images import load_image

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # largest photo file accepted (the app also gives it to launch(max_file_size))


def read_photo(src: str | os.PathLike[str] | Image.Image | np.ndarray | None, name: str | None = None) -> Image.Image:
    """A photo from a path (an upload), an image or an array, checked: file size, format, pixel count.

    Raises:
        ImageError: no photo, a file over MAX_UPLOAD_BYTES, or anything `load_image` refuses.
    """
    if src is None or (isinstance(src, str) and not src):
        raise ImageError("no photo: upload one or pick one from the gallery")
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        label = name or path.name
        if path.is_file() and path.stat().st_size > MAX_UPLOAD_BYTES:
            size_mb = path.stat().st_size / 1_048_576
            raise ImageError(f"{label}: file too large ({size_mb:.1f} MB, the limit is {MAX_UPLOAD_BYTES >> 20} MB)")
        return load_image(path, name=label)
    return load_image(src, name=name)
