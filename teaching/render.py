"""Showing explanations: colour maps, heatmap overlays, highlights, gradient images and captioned grids.

Maps are float arrays in [0, 1] of shape (H, W); they are resized (bilinear) to the image they go with. Only
PIL, NumPy and OpenCV are used here, never torch. `darken_outside` is the highlight used in machine-teaching
studies: the photo stays as it is where the model looks and is darkened elsewhere. `gradient_image` follows the
usual display of guided backpropagation (pytorch-grad-cam's `deprocess_image`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
}
PAD = 8  # pixels between cells, around the grid and below each text block
LINE_SPACING = 1.3  # line height as a multiple of the font size

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
# Fonts with Chinese glyphs (PIL's built-in font has none), looked for at known paths without fontconfig: (file, face
# index of its Simplified Chinese face). TEACHING_CJK_FONT names another file (its first face).
CJK_FONTS = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # Debian, Ubuntu: fonts-noto-cjk
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),  # Arch
    ("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc", 2),  # Fedora
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),  # fonts-wqy-microhei
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),  # fonts-wqy-zenhei
    ("/System/Library/Fonts/PingFang.ttc", 0),  # macOS
    ("C:/Windows/Fonts/msyh.ttc", 0),  # Windows: Microsoft YaHei
)
CJK_FONT_ENV = "TEACHING_CJK_FONT"


def colorize(m: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """Colour a map in [0, 1] with an OpenCV colour map.

    Args:
        m: (H, W) values in [0, 1]; values outside are clipped and NaN counts as 0.
        cmap: one of `COLORMAPS`.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colour map {cmap!r}; choose one of {', '.join(COLORMAPS)}")
    levels = np.rint(np.clip(np.nan_to_num(_as_map(m), nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    bgr = cv2.applyColorMap(levels, COLORMAPS[cmap])  # (H, W, 3) BGR
    return np.ascontiguousarray(bgr[:, :, ::-1])


def overlay(image: Image.Image, m: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend a coloured map over an image: (1 - alpha) * image + alpha * heat.

    Args:
        image: the photo.
        m: (h, w) map in [0, 1], resized (bilinear) to the image size when needed.
        alpha: weight of the heat colours, in [0, 1].
        cmap: one of `COLORMAPS`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = np.asarray(image.convert("RGB"))
    heat = colorize(_fit(m, image.size), cmap)
    # OpenCV blends uint8 in float32 and rounds: equal to the float64 formula, or 1 level off for some alphas
    return Image.fromarray(cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0), "RGB")


def darken_outside(image: Image.Image, m: np.ndarray, threshold: float = 0.5, factor: float = 0.3) -> Image.Image:
    """Keep the image where the map reaches the threshold and darken it elsewhere.

    Args:
        image: the photo.
        m: (h, w) map in [0, 1], resized (bilinear) to the image size when needed.
        threshold: map values at or above it are left as they are.
        factor: brightness kept below the threshold, in [0, 1].
    """
    if not 0.0 <= factor <= 1.0:
        raise ValueError(f"factor must be in [0, 1], got {factor}")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    keep = _fit(m, image.size) >= threshold  # (H, W)
    out = np.where(keep[:, :, None], rgb, rgb * factor)
    return Image.fromarray(np.rint(out).astype(np.uint8), "RGB")


def gradient_image(attr: np.ndarray) -> Image.Image:
    """Show a signed (3, H, W) pixel attribution as an RGB image, grey where it is zero.

    The attribution is centred on its mean, divided by its standard deviation, scaled by 0.1 around 0.5 and
    clipped to [0, 1].
    """
    a = _as_attr(attr)
    a = (a - a.mean()) / (a.std() + 1e-5) * 0.1 + 0.5
    rgb = np.rint(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8).transpose(1, 2, 0)  # (H, W, 3)
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def gradient_magnitude(attr: np.ndarray) -> np.ndarray:
    """The (H, W) magnitude of a (3, H, W) attribution in [0, 1]: the largest absolute value over the channels,
    divided by its 99th percentile (so a few extreme pixels do not hide the rest) and clipped."""
    mag = np.abs(_as_attr(attr)).max(axis=0)  # (H, W)
    scale = float(np.percentile(mag, 99))
    if scale <= 0.0:
        scale = float(mag.max())
    return np.clip(mag / scale, 0.0, 1.0) if scale > 0.0 else np.zeros_like(mag)


def make_grid(
    cells: Sequence[Sequence[Image.Image | None]],
    captions: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell_size: int = 224,
    title: str | None = None,
) -> Image.Image:
    """Lay images out in rows and columns on white, with captions, row labels, column headers and a title.

    Each image is resized to fit a `cell_size` square, keeping its aspect ratio, centred across it and standing
    on its bottom edge, right above its caption; a None cell stays blank. Captions (may hold newlines) are
    wrapped to the cell width under each cell, and every caption band is as tall as the tallest caption. Row
    labels sit in a column `cell_size // 2` wide on the left.

    Args:
        cells: rows of images; shorter rows are padded with blank cells.
        captions: one text per cell, same shape as `cells`.
        row_labels: one text per row.
        col_labels: one text per column, wrapped to the cell width.
        cell_size: side of the square each image is fitted into, in pixels.
        title: a line (wrapped) above everything.
    """
    nrows, ncols = len(cells), max((len(row) for row in cells), default=0)
    if nrows == 0 or ncols == 0:
        raise ValueError("make_grid needs at least one cell")
    if captions is not None and [len(r) for r in captions] != [len(r) for r in cells]:
        raise ValueError("captions must have the same rows and columns as cells")
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"{len(row_labels)} row labels for {nrows} rows")
    if col_labels is not None and len(col_labels) != ncols:
        raise ValueError(f"{len(col_labels)} column labels for {ncols} columns")
    size = font_size(cell_size)
    title_size = round(size * 1.4)
    every = [title or "", *(row_labels or []), *(col_labels or []), *(t for row in captions or [] for t in row)]
    font, title_font = font_for(size, *every), font_for(title_size, *every)
    line_h, title_line_h = round(size * LINE_SPACING), round(title_size * LINE_SPACING)
    label_w = cell_size // 2 if row_labels is not None else 0
    left = PAD + (label_w + PAD if row_labels is not None else 0)
    width = left + ncols * (cell_size + PAD)

    title_lines = _wrap(title, title_font, width - 2 * PAD) if title else []
    headers = [_wrap(t, font, cell_size) for t in col_labels] if col_labels is not None else []
    texts = [[_wrap(t, font, cell_size) for t in row] for row in captions] if captions is not None else []
    title_h = len(title_lines) * title_line_h + PAD if title_lines else 0
    header_h = max((len(h) for h in headers), default=0) * line_h
    header_h += PAD if header_h else 0
    caption_h = max((len(t) for row in texts for t in row), default=0) * line_h
    caption_h += PAD if caption_h else 0
    row_h = cell_size + caption_h + PAD
    height = PAD + title_h + header_h + nrows * row_h

    grid = Image.new("RGB", (width, height), (255, 255, 255))
    _draw_lines(grid, title_lines, title_font, PAD, PAD, width - 2 * PAD, title_line_h, center=True)
    top = PAD + title_h
    for c, lines in enumerate(headers):
        _draw_lines(grid, lines, font, left + c * (cell_size + PAD), top, cell_size, line_h, center=True)
    top += header_h
    for r, row in enumerate(cells):
        y = top + r * row_h
        if row_labels is not None:
            lines = _wrap(row_labels[r], font, label_w)
            y_label = y + (cell_size - len(lines) * line_h) // 2
            _draw_lines(grid, lines, font, PAD, y_label, label_w, line_h, center=False)
        for c, img in enumerate(row):
            x = left + c * (cell_size + PAD)
            if img is not None:
                fitted = fit_image(img, cell_size)
                grid.paste(fitted, (x + (cell_size - fitted.width) // 2, y + cell_size - fitted.height))
            if texts:
                _draw_lines(grid, texts[r][c], font, x, y + cell_size + PAD // 2, cell_size, line_h, center=False)
    return grid


SCALE_WORDS = "how strongly this region argues for the species, relative to the strongest panel"
"""What the colours of a row drawn on one scale (`Explanation.shown_maps`) mean, in words."""


def colour_bar(
    width: int,
    text: str = SCALE_WORDS,
    cmap: str = "jet",
    font_px: int = 14,
    words: tuple[str, str, str] = ("Colour: {text}", "none", "strongest"),
) -> Image.Image:
    """A small legend on white: the colour map from 0 to 1 as a bar, "none" and "strongest" at its ends, and
    `text` above it (wrapped to `width`); `words` are the line above (with `{text}`) and the two ends."""
    line_text, *ends = words[0].format(text=text), words[1], words[2]
    font = font_for(font_px, line_text, *ends)
    line_h = round(font_px * LINE_SPACING)
    end_w = round(max(_length(font, t) for t in ends)) + PAD
    bar_w, bar_h = max(width - 2 * (end_w + PAD), 16), max(font_px, 8)
    lines = _wrap(line_text, font, width - 2 * PAD)
    out = Image.new("RGB", (width, PAD + len(lines) * line_h + bar_h + PAD), (255, 255, 255))
    _draw_lines(out, lines, font, PAD, PAD // 2, width - 2 * PAD, line_h, center=True)
    y = PAD // 2 + len(lines) * line_h
    ramp = np.tile(np.linspace(0.0, 1.0, bar_w, dtype=np.float32), (bar_h, 1))
    x = (width - bar_w) // 2
    out.paste(Image.fromarray(colorize(ramp, cmap), "RGB"), (x, y))
    _draw_lines(out, [ends[0]], font, x - end_w, y + (bar_h - line_h) // 2, end_w - PAD // 2, line_h, center=False)
    _draw_lines(out, [ends[1]], font, x + bar_w + PAD // 2, y + (bar_h - line_h) // 2, end_w, line_h, False)
    return out


def stack(*images: Image.Image) -> Image.Image:
    """Images one below the other on white, left-aligned."""
    width = max(i.width for i in images)
    out = Image.new("RGB", (width, sum(i.height for i in images)), (255, 255, 255))
    y = 0
    for img in images:
        out.paste(img, (0, y))
        y += img.height
    return out


def to_png_bytes(img: Image.Image, compress_level: int = 6) -> bytes:
    """The image encoded as PNG (compress_level 1 is about twice as fast as the default 6, for larger files)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def font_size(cell_size: int) -> int:
    """The caption font size used for a grid of `cell_size` cells (14 for 224)."""
    return max(10, cell_size // 16)


def cjk_font() -> tuple[str, int] | None:
    """The font file (and face index) that draws Chinese: TEACHING_CJK_FONT, else the first of CJK_FONTS present;
    None when there is none (text with Chinese characters would then be drawn as empty boxes)."""
    chosen = os.environ.get(CJK_FONT_ENV)
    if chosen:
        return (chosen, 0) if Path(chosen).is_file() else None
    return next(((path, index) for path, index in CJK_FONTS if Path(path).is_file()), None)


def can_draw(text: str) -> bool:
    """True when the grids can draw `text`: it has no Chinese (or other CJK) characters, or a CJK font is here."""
    return not _needs_cjk(text) or cjk_font() is not None


def font_for(size: int, *texts: str) -> Font:
    """The font a grid draws `texts` with at `size` pixels: PIL's built-in font, or the CJK font (`cjk_font`) when
    one of them has CJK characters and the font is here."""
    return _font(size, *_face(any(_needs_cjk(t) for t in texts)))


def _needs_cjk(text: str) -> bool:
    """True when the text has a character from the CJK blocks (U+2E80 on: ideographs, kana, full-width forms)."""
    return any(ord(ch) >= 0x2E80 for ch in text)


def _face(cjk: bool) -> tuple[str | None, int]:
    """(font file, face index) for text with or without CJK characters; (None, 0) is PIL's built-in font."""
    found = cjk_font() if cjk else None
    return found if found else (None, 0)


@lru_cache(maxsize=32)
def _font(size: int, path: str | None = None, index: int = 0) -> Font:
    """PIL's built-in font at `size` pixels, or the face `index` of the font file `path`."""
    return ImageFont.load_default(size=size) if path is None else ImageFont.truetype(path, size, index=index)


@lru_cache(maxsize=4096)
def _wrap(text: str, font: Font, max_width: int) -> tuple[str, ...]:
    """Split text into lines no wider than max_width: at newlines, then at spaces, then inside long words.

    Runs of spaces inside a line are kept (as in "African elephant  0.62"). Cached: a page draws the same
    captions, headers and labels on every request.
    """
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for word in paragraph.strip().split(" "):
            candidate = f"{line} {word}" if line else word
            if _length(font, candidate) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = word
            while _length(font, line) > max_width and len(line) > 1:
                cut = len(line) - 1
                while cut > 1 and _length(font, line[:cut]) > max_width:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return tuple(lines)


@lru_cache(maxsize=16384)
def _length(font: Font, text: str) -> float:
    """The advance width of a line of text in pixels (cached)."""
    return float(font.getlength(text))


@lru_cache(maxsize=4096)
def _glyphs(font: Font, line: str) -> tuple[Image.Image, int, int] | None:
    """A line rendered once as an 8-bit coverage mask, and its offset from the text origin; None when blank.

    Pasting black through this mask gives the same pixels as `ImageDraw.text` with black ink (the blend is the
    same), at a fraction of the cost once cached: rendering glyphs is most of the time of drawing a grid.
    """
    left, top, right, bottom = (int(v) for v in font.getbbox(line))
    if right <= left or bottom <= top:
        return None
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), line, fill=255, font=font)
    return mask, left, top


def _draw_lines(
    grid: Image.Image, lines: Sequence[str], font: Font, x: int, y: int, width: int, line_h: int, center: bool
) -> None:
    """Draw lines of black text from (x, y), left-aligned or centred in `width`."""
    for i, line in enumerate(lines):
        glyphs = _glyphs(font, line)
        if glyphs is None:
            continue
        mask, left, top = glyphs
        dx = (width - round(_length(font, line))) // 2 if center else 0
        grid.paste((0, 0, 0), (x + max(dx, 0) + left, y + i * line_h + top), mask)


def fit_image(img: Image.Image, side: int) -> Image.Image:
    """The image as RGB, resized (Lanczos) to fit a side x side square keeping its aspect ratio.

    A large photo is first reduced by an integer factor (PIL's `reducing_gap`), which is much faster than one
    Lanczos pass over every pixel of a phone photo and looks the same at this size.
    """
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.convert("RGB").resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _fit(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The map resized (bilinear) to size = (width, height), as float32."""
    m = _as_map(m)
    if (m.shape[1], m.shape[0]) == size:
        return m
    return cv2.resize(m, size, interpolation=cv2.INTER_LINEAR)


def _as_map(m: np.ndarray) -> np.ndarray:
    """A (H, W) float32 map, checked."""
    m = np.asarray(m, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"a map must have shape (H, W), got {m.shape}")
    return m


def _as_attr(attr: np.ndarray) -> np.ndarray:
    """A (3, H, W) float64 attribution, checked."""
    a = np.asarray(attr, dtype=np.float64)
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"an attribution must have shape (3, H, W), got {a.shape}")
    return a
