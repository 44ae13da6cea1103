"""render: colour maps, overlays, highlights, gradient images and grid layout, checked by pixel values."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from teaching.render import (
    COLORMAPS,
    PAD,
    colorize,
    darken_outside,
    font_size,
    gradient_image,
    gradient_magnitude,
    make_grid,
    overlay,
    to_png_bytes,
)


def solid(color: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> Image.Image:
    return Image.new("RGB", size, color)


def px(img: Image.Image, x: int, y: int) -> list[int]:
    return np.asarray(img)[y, x].tolist()


# --- colour maps and overlays ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmap", "low", "high"),
    [
        ("jet", (0, 0, 128), (128, 0, 0)),
        ("viridis", (68, 1, 84), (253, 231, 37)),
        ("inferno", (0, 0, 4), (252, 255, 164)),
        ("magma", (0, 0, 4), (252, 253, 191)),
        ("turbo", (48, 18, 59), (122, 4, 3)),
    ],
)
def test_colorize_end_colours(cmap: str, low: tuple[int, ...], high: tuple[int, ...]) -> None:
    out = colorize(np.array([[0.0, 1.0]]), cmap)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3)
    np.testing.assert_allclose(out[0, 0], low, atol=3)
    np.testing.assert_allclose(out[0, 1], high, atol=3)


def test_colorize_clips_and_treats_nan_as_zero() -> None:
    out = colorize(np.array([[-1.0, np.nan, 0.0, 2.0, 1.0]]))
    assert out[0, 0].tolist() == out[0, 1].tolist() == out[0, 2].tolist() == [0, 0, 128]
    assert out[0, 3].tolist() == out[0, 4].tolist() == [128, 0, 0]


def test_colorize_refuses_unknown_names_and_shapes() -> None:
    assert set(COLORMAPS) == {"jet", "turbo", "inferno", "viridis", "magma"}
    with pytest.raises(ValueError, match="unknown colour map 'rainbow'"):
        colorize(np.zeros((2, 2)), "rainbow")
    with pytest.raises(ValueError, match=r"shape \(H, W\)"):
        colorize(np.zeros((1, 2, 2)))


def test_overlay_alpha_ends_and_middle() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(overlay(image, rng.random((3, 4)), alpha=0.0)), np.asarray(image))
    m = rng.random((12, 16))
    assert np.array_equal(np.asarray(overlay(image, m, alpha=1.0)), colorize(m))
    half = overlay(solid((100, 100, 100)), np.zeros((4, 4)), alpha=0.5)
    assert px(half, 3, 3) == [50, 50, 114]
    for alpha in (0.5, 0.3, 0.45):  # the blend is (1 - alpha) * image + alpha * heat, rounded (within a level)
        expected = (1 - alpha) * np.asarray(image, np.float64) + alpha * colorize(m).astype(np.float64)
        got = np.asarray(overlay(image, m, alpha=alpha), np.float64)
        if alpha == 0.5:  # exact halves: rounded like np.rint
            assert np.array_equal(got, np.rint(expected))
        else:  # OpenCV blends in float32: at most one level beyond the rounding
            assert np.abs(got - expected).max() <= 1.5


def test_overlay_resizes_the_map_bilinearly() -> None:
    out = np.asarray(overlay(solid((0, 0, 0), (20, 10)), np.array([[0.0, 1.0]] * 2), alpha=1.0))
    assert out.shape == (10, 20, 3)
    assert out[5, 0].tolist() == [0, 0, 128] and out[5, 19].tolist() == [128, 0, 0]
    assert len({tuple(c) for c in out[5].tolist()}) > 4  # interpolated colours between the ends, not nearest
    with pytest.raises(ValueError, match="alpha"):
        overlay(solid((0, 0, 0)), np.zeros((2, 2)), alpha=1.5)


def test_darken_outside_keeps_hot_pixels_and_scales_the_rest() -> None:
    m = np.zeros((16, 16))
    m[:, :8] = 1.0
    m[0, 12] = 0.5  # exactly at the threshold: kept
    out = darken_outside(solid((200, 100, 51)), m, threshold=0.5, factor=0.3)
    assert px(out, 2, 5) == [200, 100, 51]
    assert px(out, 12, 0) == [200, 100, 51]
    assert px(out, 12, 5) == [60, 30, 15]
    small = darken_outside(solid((200, 100, 50), (8, 4)), np.array([[1.0, 0.0]]), factor=0.0)
    assert px(small, 0, 2) == [200, 100, 50] and px(small, 7, 2) == [0, 0, 0]


# --- gradient images ---------------------------------------------------------------------------------------------


def test_gradient_image_is_grey_at_zero_and_bright_at_a_positive_spike() -> None:
    assert set(np.asarray(gradient_image(np.zeros((3, 5, 6)))).ravel().tolist()) == {128}
    attr = np.zeros((3, 5, 6))
    attr[0, 2, 3] = 1.0
    attr[2, 4, 4] = -1.0
    out = np.asarray(gradient_image(attr))
    assert out.shape == (5, 6, 3)
    assert out[2, 3, 0] == 255 and out[4, 4, 2] == 0
    assert set(out[0, 0].tolist()) == {128}  # the spikes cancel in the mean, so zero stays grey


def test_gradient_magnitude_ignores_sign_and_takes_the_channel_max() -> None:
    rng = np.random.default_rng(0)
    attr = rng.normal(size=(3, 10, 10))
    mag = gradient_magnitude(attr)
    assert mag.shape == (10, 10) and mag.min() >= 0.0 and mag.max() == 1.0
    np.testing.assert_array_equal(mag, gradient_magnitude(-attr))
    raw = np.abs(attr).max(axis=0)
    assert np.array_equal(np.argsort(raw[raw < np.percentile(raw, 99)]), np.argsort(mag[raw < np.percentile(raw, 99)]))
    assert np.array_equal(gradient_magnitude(np.zeros((3, 4, 4))), np.zeros((4, 4)))
    assert np.array_equal(gradient_magnitude(np.full((3, 4, 4), -2.0)), np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        gradient_magnitude(np.zeros((4, 4)))


# --- grids -------------------------------------------------------------------------------------------------------


def test_grid_size_without_labels() -> None:
    grid = make_grid([[solid((255, 0, 0))] * 3] * 2, cell_size=50)
    assert grid.size == (PAD + 3 * (50 + PAD), PAD + 2 * (50 + PAD))


def test_grid_size_with_labels_captions_and_title() -> None:
    cell = 100
    assert font_size(cell) == 10  # line height round(10 * 1.3) = 13, title font 14 with line height 18
    grid = make_grid(
        [[solid((255, 0, 0)), solid((0, 255, 0)), None], [solid((0, 0, 255))] * 3],
        captions=[["a  0.62\nbig ears", "b", ""], ["c", "d", "e"]],
        row_labels=["Grad-CAM", "Score-CAM"],
        col_labels=["African", "Asian", "tusker"],
        cell_size=cell,
        title="Where the model looks",
    )
    label_w = cell // 2
    caption_h = 2 * 13 + PAD
    assert grid.size == (
        PAD + label_w + PAD + 3 * (cell + PAD),
        PAD + (18 + PAD) + (13 + PAD) + 2 * (cell + caption_h + PAD),
    )


def test_grid_cells_fit_keep_aspect_and_none_is_blank() -> None:
    wide = solid((255, 0, 0), (200, 100))
    grid = np.asarray(make_grid([[wide, None]], cell_size=100))
    x0, y0 = PAD, PAD
    assert grid[y0 + 50, x0 + 50].tolist() == [255, 0, 0]
    assert grid[y0 + 99, x0 + 0].tolist() == [255, 0, 0]  # resized to 100x50, on the cell's bottom: rows 50..99
    assert grid[y0 + 50, x0 + 99].tolist() == [255, 0, 0]
    assert grid[y0 + 49, x0 + 50].tolist() == [255, 255, 255]
    tall = np.asarray(make_grid([[solid((0, 0, 255), (50, 100))]], cell_size=100))
    assert tall[y0 + 50, x0 + 25].tolist() == [0, 0, 255] and tall[y0 + 50, x0 + 24].tolist() == [255, 255, 255]
    blank = grid[y0 : y0 + 100, x0 + 100 + PAD : x0 + 200 + PAD]
    assert blank.min() == 255


def test_grid_draws_wrapped_captions_inside_their_cell() -> None:
    sentence = "Asian elephant  0.31\nsmaller rounded ears, a domed head with two humps and a convex back " * 2
    short = make_grid([[solid((0, 0, 0), (50, 50))] * 2], captions=[["x", "y"]], cell_size=100)
    long = make_grid([[solid((0, 0, 0), (50, 50))] * 2], captions=[[sentence, ""]], cell_size=100)
    assert long.width == short.width and long.height > short.height + 5 * 13
    a = np.asarray(long)
    band = a[PAD + 100 :, :]  # under the images
    ink = band.min(axis=2) < 128
    assert ink[:, PAD : PAD + 100].sum() > 200  # text drawn under the first cell
    assert not ink[:, PAD + 100 : PAD + 100 + PAD].any()  # nothing spills into the gap
    assert not ink[:, 2 * PAD + 100 :].any()  # the empty caption draws nothing
    widths = []
    for caption in ["a 0.62", "a  0.62"]:
        ink_cols = (
            np.asarray(make_grid([[None]], captions=[[caption]], cell_size=100)).min(axis=(0, 2)) < 128
        ).nonzero()
        widths.append(ink_cols[0].max() - ink_cols[0].min())
    assert widths[1] > widths[0]  # runs of spaces are kept
    headers = np.asarray(make_grid([[None]], col_labels=["African elephant"], cell_size=100))
    assert (headers[PAD : PAD + 13].min(axis=2) < 128).any()


def test_grid_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="at least one cell"):
        make_grid([])
    with pytest.raises(ValueError, match="captions"):
        make_grid([[None, None]], captions=[["a"]])
    with pytest.raises(ValueError, match="row labels"):
        make_grid([[None]], row_labels=["a", "b"])
    with pytest.raises(ValueError, match="column labels"):
        make_grid([[None]], col_labels=["a", "b"])


def test_png_bytes_round_trip() -> None:
    img = solid((1, 2, 3), (5, 4))
    data = to_png_bytes(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(img))


@pytest.mark.parametrize("size", [10, 14, 20])
@pytest.mark.parametrize("text", ["African elephant  62.3%", "- two fingers on the trunk tip", "gjpqy ÄÖ Å", "i", " "])
def test_cached_text_is_pixel_identical_to_pil_drawing(size: int, text: str) -> None:
    """The grid pastes cached glyph masks; the pixels must be those of ImageDraw.text with black ink."""
    from PIL import ImageDraw

    from teaching.render import _draw_lines, _font

    font = _font(size)
    expected = Image.new("RGB", (420, 48), (255, 255, 255))
    ImageDraw.Draw(expected).text((7, 9), text, fill=(0, 0, 0), font=font)
    for _ in range(2):  # the second call uses the cache
        got = Image.new("RGB", (420, 48), (255, 255, 255))
        _draw_lines(got, [text], font, 7, 9, 420, 20, center=False)
        assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_colour_bar_draws_the_colour_map_from_none_to_strongest_with_words():
    from teaching.render import SCALE_WORDS, colorize, colour_bar

    bar = np.asarray(colour_bar(700))
    assert bar.shape[1] == 700 and bar.shape[0] < 120
    row = bar[bar.shape[0] - 16]  # a row through the bar
    blue, red = colorize(np.array([[0.0]]))[0, 0], colorize(np.array([[1.0]]))[0, 0]
    cols = [i for i in range(700) if (row[i] != 255).any() and abs(row[i].astype(int) - blue).sum() <= 3]
    reds = [i for i in range(700) if abs(row[i].astype(int) - red).sum() <= 3]
    assert cols and reds and min(cols) < min(reds)  # "none" (blue) on the left, "strongest" (red) on the right
    assert "relative to the strongest panel" in SCALE_WORDS
    assert (bar[:20] < 128).any()  # the words above the bar


def test_the_cjk_font_is_chosen_for_chinese_text_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from teaching import render

    monkeypatch.setenv(render.CJK_FONT_ENV, "/no/such/font.ttc")
    assert render.cjk_font() is None
    assert render.can_draw("African elephant 0.91") and not render.can_draw("非洲象")
    assert not isinstance(render.font_for(14, "非洲象").path, str)  # PIL's built-in font (from memory)
    monkeypatch.delenv(render.CJK_FONT_ENV)
    found = [(p, i) for p, i in render.CJK_FONTS if Path(p).is_file()]
    assert render.cjk_font() == (found[0] if found else None)
    if not found:
        pytest.skip("no CJK font installed (apt-get install fonts-noto-cjk)")
    font = render.font_for(14, "非洲象 0.91")
    assert isinstance(font, ImageFont.FreeTypeFont) and font.path == found[0][0]
    if found[0][0].endswith("NotoSansCJK-Regular.ttc"):
        assert font.getname() == ("Noto Sans CJK SC", "Regular")  # the Simplified Chinese face
    assert not isinstance(render.font_for(14, "African elephant").path, str)  # Latin text keeps the built-in font
    assert render.can_draw("非洲象")
