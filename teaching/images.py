"""Reading user images: any file, bytes, PIL image or array in, an RGB PIL image with EXIF orientation applied out.

Everything a user may upload is refused with an `ImageError` whose one-line message names the file and the reason
(not an image, empty, truncated, too small, too many pixels, missing). The pixel count is checked from the header
before any decoding, so a decompression bomb never allocates its pixels. Odd modes are converted, not clipped:
16-bit and 32-bit integer images are scaled to 8 bits, transparent pixels are composited onto white, CMYK and
palette images become RGB, and animated GIF/WebP give their first frame.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from teaching.errors import ImageError

MAX_PIXELS = 40_000_000  # refuse larger images (decompression-bomb cap), checked from the header
MIN_SIDE = 8  # refuse images with a side shorter than this, in pixels

# The formats we open (JPEG also opens the multi-picture JPEGs some cameras write). Restricting them keeps PIL
# from handing e.g. EPS files to Ghostscript.
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_NOT_IMAGE = "not an image file (JPEG, PNG, WebP, GIF, BMP or TIFF expected)"
_WHITE = (255, 255, 255)

ImageSource = str | os.PathLike[str] | bytes | Image.Image | np.ndarray


def load_image(src: ImageSource, name: str | None = None) -> Image.Image:
    """Read an image from a path, bytes, a PIL image or an array, as RGB with its EXIF orientation applied.

    Arrays may be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), of uint8, uint16, bool or floats in [0, 1].

    Args:
        src: the image, or the path of its file.
        name: how messages call the image; defaults to the file name, or "the image".

    Returns:
        A new RGB image; `src` is left as it was.

    Raises:
        ImageError: the input is missing, not an image, empty, truncated or corrupt, too small or too large.
    """
    if isinstance(src, np.ndarray):
        img = _from_array(src, name or "the image")
        _check_size(img.size, name or "the image")
        return img
    if isinstance(src, Image.Image):
        return _decode(src, name or "the image")
    if isinstance(src, bytes | bytearray | memoryview):
        label = name or "the image"
        if len(src) == 0:
            raise ImageError(f"{label}: empty file (0 bytes)")
        return _open_and_decode(io.BytesIO(bytes(src)), label)
    path = Path(src)
    label = name or path.name or str(path)
    if not path.exists():
        raise ImageError(f"{name or path}: file not found")
    if path.is_dir():
        raise ImageError(f"{label}: is a folder, not an image file")
    try:
        with path.open("rb") as fp:
            if os.fstat(fp.fileno()).st_size == 0:
                raise ImageError(f"{label}: empty file (0 bytes)")
            return _open_and_decode(fp, label)
    except OSError as e:
        raise ImageError(f"{label}: cannot read the file ({_one_line(e.strerror or str(e))})") from e


def _open_and_decode(fp: IO[bytes], label: str) -> Image.Image:
    """Open an image file object (format from its content) and decode it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=_FORMATS)
    except UnidentifiedImageError as e:
        raise ImageError(f"{label}: {_NOT_IMAGE}") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{label}: image too large (the limit is {MAX_PIXELS // 1_000_000} megapixels)") from e
    except Exception as e:  # PIL's header parsers raise many types (SyntaxError, struct.error, ...) on bad files
        raise ImageError(f"{label}: corrupt image file ({_one_line(str(e))})") from e
    with img:
        return _decode(img, label)


def _decode(img: Image.Image, label: str) -> Image.Image:
    """Check the header size, decode the first frame fully, apply EXIF orientation and convert to RGB."""
    _check_size(img.size, label)
    try:
        img.load()  # a full decode (of the first frame), so a truncated file is refused here rather than later
        upright = ImageOps.exif_transpose(img)
    except Exception as e:  # PIL's decoders raise many types (OSError, SyntaxError, ValueError, ...) on bad data
        raise ImageError(f"{label}: truncated or corrupt image file ({_one_line(str(e))})") from e
    return _to_rgb(upright, label)


def _check_size(size: tuple[int, int], label: str) -> None:
    """Refuse images that are too small or have too many pixels."""
    w, h = size
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"{label}: image too large ({w}x{h} pixels, the limit is {MAX_PIXELS // 1_000_000} megapixels)"
        )
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{label}: image too small ({w}x{h} pixels, at least {MIN_SIDE} on each side needed)")


def _to_rgb(img: Image.Image, label: str) -> Image.Image:
    """Convert a decoded image of any mode to a new RGB image; transparency becomes white."""
    mode = img.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
        img = img.convert(mode)
    elif mode in ("PA", "LA", "La", "RGBa"):
        mode = "RGBA"
        img = img.convert(mode)
    if mode == "RGBA":
        background = Image.new("RGBA", img.size, _WHITE + (255,))
        return Image.alpha_composite(background, img).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(img)), "L").convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise ImageError(f"{label}: unsupported colour mode {img.mode}") from e


def _from_array(a: np.ndarray, label: str) -> Image.Image:
    """An RGB image from an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(f"{label}: unsupported array shape {a.shape} (H x W, or H x W x 1, 3 or 4 expected)")
    if not (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.number)) or np.iscomplexobj(a):
        raise ImageError(f"{label}: unsupported array type {a.dtype} (uint8, uint16 or floats in [0, 1] expected)")
    if a.ndim == 2:
        return Image.fromarray(_to_uint8(a), "L").convert("RGB")
    if a.shape[2] == 3:
        return Image.fromarray(_to_uint8(a), "RGB")
    rgba = Image.fromarray(_to_uint8(a), "RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE + (255,)), rgba).convert("RGB")


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale pixel values to uint8 without clipping.

    uint8 stays; bool maps to 0/255; uint16 is divided by 257 (65535 -> 255). Other integers and floats are read
    by their range: floats in [0, 1] are multiplied by 255, values in [0, 255] are kept, integers in [0, 65535]
    are divided by 257, and anything else is stretched from its minimum to its maximum. NaN becomes 0.
    """
    if a.dtype.kind == "u" and a.dtype.itemsize == 1:
        return np.ascontiguousarray(a, dtype=np.uint8)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    x = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:  # 16-bit, either byte order
        x = x / 257.0
    elif np.issubdtype(a.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        x = x * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif np.issubdtype(a.dtype, np.integer) and lo >= 0.0 and hi <= 65535.0:
        x = x / 257.0
    else:
        x = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _one_line(text: str) -> str:
    """The text on one line, whitespace collapsed."""
    return " ".join(text.split())
