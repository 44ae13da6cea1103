"""A bad-input corpus made by seeded code: odd, broken, hostile and amplifying files with the answer each must get.

Used by tests/test_bad_input.py (library, CLI and app answers) and bench/soak.py (the app under load). Every file is
written from code, nothing binary is committed. `expected` is a fragment of the one-line refusal, or None when the
file is a photo that must be explained.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str  # file name, with the extension a user would give it
    make: Callable[[], bytes]
    expected: str | None  # a fragment of the refusal, or None: accepted


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that declares w x h pixels and holds no pixel data (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def strip_png(w: int, h: int) -> bytes:
    """A small PNG file of a very long, very thin image (8 x 100,000 is 16.7 KB): it amplifies when resized."""
    return _encode(Image.new("L", (w, h), 128), "PNG")


def lying_jpeg(declared: int = 6000, w: int = 320, h: int = 240) -> bytes:
    """A w x h JPEG whose frame header says `declared` x `declared` (libjpeg fills the rest with grey)."""
    data = bytearray(_encode(_noise(w, h, 1), "JPEG", quality=80))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, declared, declared)
    return bytes(data)


def corrupt_crc_png() -> bytes:
    """A PNG whose IHDR checksum is wrong."""
    data = bytearray(_encode(_noise(64, 48), "PNG"))
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def text_bomb_png() -> bytes:
    """A PNG with a compressed text chunk that inflates to 2 MB (over Pillow's 1 MB cap on text)."""
    png = _encode(_noise(32, 32), "PNG")
    ztxt = _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"a" * 2_000_000, 9))
    return png[:33] + ztxt + png[33:]  # after the signature and IHDR


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


CASES: list[Case] = [
    Case("notes.txt", lambda: b"hello, not pixels\n", "not an image file"),
    Case("page.jpg", lambda: b"<html><body>not a photo</body></html>", "not an image file"),
    Case("figure.eps", lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "not an image file"),
    Case("empty.png", lambda: b"", "empty file"),
    Case("cut.jpg", lambda: half(_encode(_noise(64, 64), "JPEG")), "truncated or corrupt image file"),
    Case("cut.png", lambda: half(_encode(_noise(64, 64), "PNG")), "truncated or corrupt image file"),
    Case("corrupt_crc.png", corrupt_crc_png, "corrupt PNG file"),
    Case("junk.gif", lambda: b"GIF89a" + bytes(range(256)) * 4, "corrupt GIF file"),
    Case("text_bomb.png", text_bomb_png, "its text metadata is over 1 MB"),
    Case("dot.png", lambda: _encode(Image.new("RGB", (1, 1)), "PNG"), "image too small"),
    Case("bomb.png", lambda: png_header_only(10_000, 10_000), "image too large"),
    Case("strip_8x100000.png", lambda: strip_png(8, 100_000), "image too narrow"),
    Case("strip_8x20000.png", lambda: strip_png(8, 20_000), "image too narrow"),
    Case("lying_6000.jpg", lying_jpeg, "truncated or corrupt image file"),
    Case("noise.jpg", lambda: _encode(_noise(320, 240), "JPEG", quality=90), None),
    Case("panorama_10to1.png", lambda: _encode(_noise(1000, 100, 2), "PNG"), None),
    Case("grey16.png", lambda: _encode(Image.fromarray(np.full((64, 80), 40000, np.uint16)), "PNG"), None),
    Case("alpha.png", lambda: _encode(_noise(64, 64).convert("RGBA"), "PNG"), None),
    Case("cmyk.jpg", lambda: _encode(_noise(64, 64).convert("CMYK"), "JPEG"), None),
    Case("anim.gif", lambda: _encode(_noise(64, 64), "GIF", save_all=True, append_images=[_noise(64, 64, 3)]), None),
]

AMPLIFYING = ["strip_8x100000.png", "strip_8x20000.png", "lying_6000.jpg", "bomb.png", "text_bomb.png"]


def write_corpus(folder: Path) -> dict[str, Path]:
    """Every case written into `folder`; name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in CASES:
        paths[case.name] = folder / case.name
        paths[case.name].write_bytes(case.make())
    return paths


def expected(name: str) -> str | None:
    return next(c.expected for c in CASES if c.name == name)
