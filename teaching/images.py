"""Reading user images: any file, bytes, PIL image or array in, an RGB PIL image with EXIF orientation applied out.

Everything a user may upload is refused with an `ImageError` whose one-line message names the file (cut to
`errors.ECHO_CHARS`) and the reason in the user's terms (not an image, empty, corrupt, truncated, too small, too
many pixels, too narrow, missing). Memory is bounded by design, decided from the header before any decoding: at most
MAX_PIXELS pixels and a long side at most MAX_ASPECT times the short side (a model resizes the short side to ~300
pixels, so a 8 x 100,000 strip would become a 256 x 3.2 M image); a JPEG that declares more pixels than its data can
hold (a Huffman-coded JPEG needs at least a bit per 8 x 8 block) is refused as truncated instead of being decoded as
a huge grey picture; `min_side` decodes a large JPEG at a reduced scale (Pillow's `draft`).

Odd modes are converted, not clipped: 16-bit and 32-bit integer images are scaled to 8 bits, transparent pixels are
composited onto white, CMYK and palette images become RGB, and animated GIF/WebP give their first frame.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from teaching.errors import ImageError, echo

MAX_PIXELS = 40_000_000  # refuse larger images (decompression-bomb cap), checked from the header
MIN_SIDE = 8  # refuse images with a side shorter than this, in pixels
MAX_ASPECT = 20  # refuse images whose long side is more than this many times the short side (from the header)
_MIN_JPEG_BITS_PER_BLOCK = 1  # a Huffman-coded scan spends at least one bit on every 8 x 8 block of a component

# The formats we open (JPEG also opens the multi-picture JPEGs some cameras write). Restricting them keeps PIL
# from handing e.g. EPS files to Ghostscript.
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_NOT_IMAGE = "not an image file (JPEG, PNG, WebP, GIF, BMP or TIFF expected)"
_TRUNCATED = "truncated or corrupt image file"
# how each format's file starts: a file that starts like an image but cannot be opened is a corrupt image
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
_ARITHMETIC_SOF = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # arithmetic-coded JPEGs can spend less than a bit a block
_WHITE = (255, 255, 255)

ImageSource = str | os.PathLike[str] | bytes | Image.Image | np.ndarray


def load_image(src: ImageSource, name: str | None = None, min_side: int | None = None) -> Image.Image:
    """Read an image from a path, bytes, a PIL image or an array, as RGB with its EXIF orientation applied.

    Arrays may be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), of uint8, uint16, bool or floats in [0, 1].

    Args:
        src: the image, or the path of its file.
        name: how messages call the image; defaults to the file name, or "the image".
        min_side: decode a JPEG at the smallest of Pillow's reduced scales (1/2, 1/4, 1/8) whose sides are still at
            least this long (a server that shows and explains 224-pixel crops needs no 40 MP decode); None: full.

    Returns:
        A new RGB image; `src` is left as it was.

    Raises:
        ImageError: the input is missing, not an image, empty, truncated or corrupt, too small or too large.
    """
    if isinstance(src, np.ndarray):
        img = _from_array(src, echo(name or "the image"))
        _check_size(img.size, echo(name or "the image"))
        return img
    if isinstance(src, Image.Image):
        return _decode(src, echo(name or "the image"))
    if isinstance(src, bytes | bytearray | memoryview):
        label = echo(name or "the image")
        if len(src) == 0:
            raise ImageError(f"{label}: empty file (0 bytes)")
        return _open_and_decode(io.BytesIO(bytes(src)), label, min_side)
    path = Path(src)
    label = echo(name or path.name or str(path))
    if not path.exists():
        raise ImageError(f"{name or path}: file not found")  # the path as given (the app only sends allowed ones)
    if path.is_dir():
        raise ImageError(f"{label}: is a folder, not an image file")
    try:
        with path.open("rb") as fp:
            if os.fstat(fp.fileno()).st_size == 0:
                raise ImageError(f"{label}: empty file (0 bytes)")
            return _open_and_decode(fp, label, min_side)
    except OSError as e:
        raise ImageError(f"{label}: cannot read the file ({_one_line(e.strerror or str(e))})") from e


def _open_and_decode(fp: IO[bytes], label: str, min_side: int | None = None) -> Image.Image:
    """Open an image file object (format from its content), check its header, and decode it."""
    head = fp.read(16)
    fp.seek(0)
    kind = next((fmt for sig, fmt in _SIGNATURES.items() if head.startswith(sig)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "WebP"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{label}: image too large (the limit is {MAX_PIXELS // 1_000_000} megapixels)") from e
    except Exception as e:  # PIL's header parsers raise many types (SyntaxError, struct.error, ...) on bad files
        raise ImageError(f"{label}: {_corrupt(kind, e)}") from e
    with img:
        _check_size(img.size, label)
        if img.format == "JPEG":
            _check_jpeg_data(fp, img.size, label)
            if min_side:
                img.draft("RGB", (min_side, min_side))  # a reduced DCT scale, never below min_side
        return _decode(img, label)


def _corrupt(kind: str | None, e: Exception) -> str:
    """Why a file could not be opened, in the user's terms: not an image, or a corrupt file of a known format."""
    if "MAX_TEXT_CHUNK" in str(e) or "MAX_TEXT_MEMORY" in str(e):  # Pillow's caps on PNG text metadata
        return "corrupt or unsupported PNG file (its text metadata is over 1 MB)"
    if kind is None:
        return _NOT_IMAGE
    return f"corrupt {kind} file (its header or a checksum is wrong)"


def _check_jpeg_data(fp: IO[bytes], size: tuple[int, int], label: str) -> None:
    """Refuse a JPEG whose compressed data is too short for the pixels its header declares (a lie or a cut file).

    libjpeg decodes the missing blocks of such a file as flat grey without an error; a Huffman-coded JPEG spends at
    least one bit on every 8 x 8 block of its first component, so fewer bytes after the first scan header than
    blocks / 8 cannot be a whole picture. Arithmetic-coded JPEGs (rare) are not held to this bound.
    """
    fp.seek(0, os.SEEK_END)
    end = fp.tell()
    scan, sof = _first_scan(fp)
    fp.seek(0)
    if scan is None or sof in _ARITHMETIC_SOF:
        return
    blocks = -(-size[0] // 8) * -(-size[1] // 8)
    if (end - scan) * 8 < blocks * _MIN_JPEG_BITS_PER_BLOCK:
        raise ImageError(f"{label}: {_TRUNCATED} (the data is too short for {size[0]}x{size[1]} pixels)")


def _first_scan(fp: IO[bytes]) -> tuple[int | None, int | None]:
    """The offset of a JPEG's first scan header (SOS) and its frame marker (SOF type), by walking the segments."""
    fp.seek(2)  # after SOI
    sof = None
    while True:
        marker = fp.read(2)
        while len(marker) == 2 and marker[0] == 0xFF and marker[1] == 0xFF:  # fill bytes
            marker = marker[1:] + fp.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None, sof
        length = fp.read(2)
        if len(length) < 2:
            return None, sof
        if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
            sof = marker[1]
        if marker[1] == 0xDA:
            return fp.tell() - 4, sof
        fp.seek(int.from_bytes(length, "big") - 2, os.SEEK_CUR)


def _decode(img: Image.Image, label: str) -> Image.Image:
    """Check the header size, decode the first frame fully, apply EXIF orientation and convert to RGB."""
    _check_size(img.size, label)
    try:
        img.load()  # a full decode (of the first frame), so a truncated file is refused here rather than later
        upright = ImageOps.exif_transpose(img)
    except Exception as e:  # PIL's decoders raise many types (OSError, SyntaxError, ValueError, ...) on bad data
        raise ImageError(f"{label}: {_TRUNCATED}") from e
    return _to_rgb(upright, label)


def _check_size(size: tuple[int, int], label: str) -> None:
    """Refuse images that are too small, have too many pixels or are too narrow (from the header)."""
    w, h = size
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"{label}: image too large ({w}x{h} pixels, the limit is {MAX_PIXELS // 1_000_000} megapixels)"
        )
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{label}: image too small ({w}x{h} pixels, at least {MIN_SIDE} on each side needed)")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageError(
            f"{label}: image too narrow ({w}x{h} pixels; the long side may be at most {MAX_ASPECT} times the short "
            f"side: crop it)"
        )


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
