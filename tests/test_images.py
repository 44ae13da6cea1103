"""load_image: every odd input converted to the right RGB pixels, every bad one refused with a one-line message."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from teaching.errors import ImageError
from teaching.images import MAX_PIXELS, MIN_SIDE, load_image


def save(img: Image.Image, path: Path, **kwargs: object) -> Path:
    img.save(path, **kwargs)
    return path


def refused(src: object, *parts: str, name: str | None = None) -> str:
    """Load src, expect an ImageError on one line holding every part; return the message."""
    with pytest.raises(ImageError) as info:
        load_image(src, name=name)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message
    return message


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 1-bit pixels, with a few bytes of data: decoding would fail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --- conversions -------------------------------------------------------------------------------------------------


def test_rgb_png_round_trips_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    img = load_image(save(Image.fromarray(a), tmp_path / "x.png"))
    assert img.mode == "RGB" and img.size == (10, 12)
    np.testing.assert_array_equal(np.asarray(img), a)


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk_pure_cyan_becomes_rgb_cyan(tmp_path: Path, fmt: str) -> None:
    path = save(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), tmp_path / f"c.{fmt.lower()}", format=fmt)
    px = np.asarray(load_image(path))[8, 8].astype(int)
    np.testing.assert_allclose(px, [0, 255, 255], atol=3)


def test_palette_without_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert np.asarray(load_image(save(img, tmp_path / "p.png")))[0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_palette_transparent_index_becomes_white(tmp_path: Path, suffix: str) -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 4, 8))  # left half opaque red, right half the transparent index 0
    out = np.asarray(load_image(save(img, tmp_path / f"p.{suffix}", transparency=0)))
    assert out[4, 1].tolist() == [200, 0, 0]
    assert out[4, 6].tolist() == [255, 255, 255]


def test_rgba_composited_onto_white(tmp_path: Path) -> None:
    a = np.zeros((8, 8, 4), dtype=np.uint8)
    a[:, :4] = (255, 0, 0, 0)  # fully transparent red
    a[:, 4:] = (0, 0, 255, 128)  # half transparent blue
    out = np.asarray(load_image(save(Image.fromarray(a, "RGBA"), tmp_path / "a.png"))).astype(int)
    assert out[0, 0].tolist() == [255, 255, 255]
    np.testing.assert_allclose(out[0, 6], [127, 127, 255], atol=1)


def test_la_composited_onto_white(tmp_path: Path) -> None:
    a = np.zeros((8, 8, 2), dtype=np.uint8)
    a[:, :4] = (0, 0)
    a[:, 4:] = (100, 255)
    out = np.asarray(load_image(save(Image.fromarray(a, "LA"), tmp_path / "la.png")))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 6].tolist() == [100, 100, 100]


def test_grayscale_and_one_bit(tmp_path: Path) -> None:
    gray = load_image(save(Image.new("L", (8, 8), 77), tmp_path / "g.bmp"))
    assert np.asarray(gray)[3, 3].tolist() == [77, 77, 77]
    bit = Image.new("1", (8, 8), 0)
    bit.paste(1, (0, 0, 8, 4))
    out = np.asarray(load_image(save(bit, tmp_path / "b.png")))
    assert out[1, 1].tolist() == [255, 255, 255] and out[6, 1].tolist() == [0, 0, 0]


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_sixteen_bit_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    a = np.zeros((8, 9), dtype=np.uint16)
    a[:, 3:6] = 257 * 100
    a[:, 6:] = 65535
    img = Image.fromarray(a)
    assert img.mode == "I;16"
    out = np.asarray(load_image(save(img, tmp_path / f"w.{suffix}")))[0, :, 0]
    assert out.tolist() == [0] * 3 + [100] * 3 + [255] * 3


def test_mode_i_and_f_scaled() -> None:
    wide = Image.fromarray(np.array([[0, 32896, 65535]] * 8, dtype=np.int32).repeat(3, axis=1), "I")
    assert np.asarray(load_image(wide))[0, ::3, 0].tolist() == [0, 128, 255]
    signed = Image.fromarray(np.array([[-10, 0, 10]] * 8, dtype=np.int32).repeat(3, axis=1), "I")
    assert np.asarray(load_image(signed))[0, ::3, 0].tolist() == [0, 128, 255]  # stretched min..max
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]] * 8, dtype=np.float32).repeat(3, axis=1), "F")
    assert np.asarray(load_image(floats))[0, ::3, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("suffix", ["gif", "webp"])
def test_animated_gives_first_frame(tmp_path: Path, suffix: str) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / f"anim.{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    with Image.open(path) as check:
        assert check.n_frames == 2
    px = np.asarray(load_image(path))[8, 8].astype(int)
    np.testing.assert_allclose(px, [255, 0, 0], atol=4)


def test_exif_orientation_6_rotates_clockwise(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 8, 8))  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_image(save(img, tmp_path / "rot.jpg", exif=exif, quality=95))
    assert out.size == (20, 40)
    a = np.asarray(out).astype(int)
    np.testing.assert_allclose(a[3, 16], [255, 0, 0], atol=30)  # now the top-right corner
    np.testing.assert_allclose(a[3, 3], [0, 0, 255], atol=30)


def test_bytes_and_pil_inputs(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (9, 9), (1, 2, 3)).save(buf, format="PNG")
    assert np.asarray(load_image(buf.getvalue()))[0, 0].tolist() == [1, 2, 3]
    src = Image.new("CMYK", (9, 9), (0, 0, 0, 0))
    out = load_image(src)
    assert src.mode == "CMYK" and out.mode == "RGB"
    assert np.asarray(out)[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((8, 8), 9, dtype=np.uint8), [9, 9, 9]),
        (np.full((8, 8, 1), 9, dtype=np.uint8), [9, 9, 9]),
        (np.full((8, 8, 3), (1, 2, 3), dtype=np.uint8), [1, 2, 3]),
        (np.full((8, 8, 4), (1, 2, 3, 0), dtype=np.uint8), [255, 255, 255]),
        (np.full((8, 8, 4), (1, 2, 3, 255), dtype=np.uint8), [1, 2, 3]),
        (np.full((8, 8, 3), (0.0, 0.5, 1.0), dtype=np.float32), [0, 128, 255]),
        (np.full((8, 8), 65535, dtype=np.uint16), [255, 255, 255]),
        (np.full((8, 8), 257 * 7, dtype=">u2"), [7, 7, 7]),
        (np.ones((8, 8), dtype=bool), [255, 255, 255]),
    ],
)
def test_arrays(array: np.ndarray, expected: list[int]) -> None:
    out = load_image(array)
    assert out.mode == "RGB" and out.size == (8, 8)
    assert np.asarray(out)[4, 4].tolist() == expected


# --- refusals ----------------------------------------------------------------------------------------------------


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("hello, not pixels\n")
    assert refused(path) == "x.txt: not an image file (JPEG, PNG, WebP, GIF, BMP or TIFF expected)"


def test_eps_is_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "a.eps"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    refused(path, "a.eps", "not an image file")


def test_empty_file_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    assert refused(tmp_path / "e.png") == "e.png: empty file (0 bytes)"
    assert refused(b"", name="upload.jpg") == "upload.jpg: empty file (0 bytes)"


def test_missing_file_and_folder(tmp_path: Path) -> None:
    refused(tmp_path / "gone.jpg", "gone.jpg", "file not found")
    refused(str(tmp_path), "is a folder")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(buf, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    refused(path, f"cut.{fmt.lower()}: truncated or corrupt image file")


def test_too_small(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (1, 1)), tmp_path / "dot.png")
    assert refused(path) == f"dot.png: image too small (1x1 pixels, at least {MIN_SIDE} on each side needed)"
    refused(np.zeros((4, 100), dtype=np.uint8), "the image", "too small")


@pytest.mark.parametrize(("side", "size_shown"), [(7000, True), (10_000, False), (20_000, False)])
def test_decompression_bomb_refused_from_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int, size_shown: bool
) -> None:
    """Above our cap, above PIL's warning and above PIL's error limits: refused before any pixel is decoded."""
    assert side * side > MAX_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(side, side))
    assert path.stat().st_size < 1000

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = refused(path, "bomb.png: image too large", "the limit is 40 megapixels")
    assert (f"{side}x{side}" in message) == size_shown


def test_bad_arrays() -> None:
    refused(np.zeros((8, 8, 5), dtype=np.uint8), "the image", "unsupported array shape (8, 8, 5)")
    refused(np.zeros(64, dtype=np.uint8), "unsupported array shape")
    refused(np.array([["a"] * 8] * 8), "unsupported array type")


@pytest.mark.fixtures
def test_real_photos_load(fixtures_dir: Path) -> None:
    paths = sorted((fixtures_dir / "species" / "African_elephant").iterdir())
    assert paths
    for path in paths:
        img = load_image(path)
        with Image.open(path) as raw:
            assert img.mode == "RGB" and sorted(img.size) == sorted(raw.size)
