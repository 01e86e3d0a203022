"""Heatmap overlays and token strips as PIL images.

:func:`overlay` colours a map in ``[0, 1]`` with a matplotlib colour map and blends it
onto the image; :func:`token_strip` lays one overlay per answer token in a grid, with the
token and its weight (e.g. ``delta^t``) under each. Maps are resized bilinearly
(:func:`dexar_core.heatmap.upsample`); a map that covers only part of the image (a
center-crop) should first go through :func:`dexar_core.heatmap.paste_to_image`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from dexar_core.errors import InputError
from dexar_core.heatmap import upsample
from dexar_core.viz.picture import colour_map

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

__all__ = ["overlay", "save_png", "token_strip"]

_CELL_GAP = 4
_TEXT_MARGIN = 2
# A map normalised in float32 may exceed 1 by a rounding step; beyond that it is unscaled.
_RANGE_TOLERANCE = 1e-5


def overlay(
    image: Image.Image, map2d: npt.ArrayLike, alpha: float = 0.5, cmap: str = "jet"
) -> Image.Image:
    """Colour a map and alpha-blend it onto the image.

    Args:
        image: the picture the map explains, any PIL mode.
        map2d: a finite ``(height, width)`` map in ``[0, 1]`` (as
            :func:`dexar_core.heatmap.minmax` gives), upsampled to the image's size.
        alpha: weight of the colours; 0 keeps the image, 1 shows only the map.
        cmap: a matplotlib colour map name.

    Returns:
        An RGB image of the same size as ``image``.

    Raises:
        InputError: for a map outside ``[0, 1]`` or not finite and 2-D, an ``alpha``
            outside ``[0, 1]``, or an unknown colour map.
    """
    if not 0 <= alpha <= 1:
        raise InputError(f"overlay: alpha must lie in [0, 1], got {alpha}.")
    colours = colour_map(cmap)
    return _blend(image.convert("RGB"), _unit_map(map2d, "overlay"), alpha, colours)


def token_strip(
    image: Image.Image,
    token_maps: npt.ArrayLike,
    tokens: Sequence[str],
    weights: Sequence[float] | None = None,
    columns: int = 8,
    *,
    cell_size: int = 160,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Image.Image:
    """A grid of per-token overlays, each captioned with its token and weight.

    Args:
        image: the picture the maps explain.
        token_maps: ``(T, height, width)`` maps in ``[0, 1]``, one per answer token.
        tokens: the T token strings, shown as given (whitespace-only tokens are quoted).
        weights: one weight per token (e.g. ``delta^t``), shown under the token; no
            weight line when None.
        columns: overlays per row; rows are added as T grows.
        cell_size: longer side of each overlay, in pixels.
        alpha: weight of the colours in each overlay.
        cmap: a matplotlib colour map name.

    Returns:
        An RGB image of ``min(T, columns)`` by ``ceil(T / columns)`` captioned cells.

    Raises:
        InputError: for maps that are not ``(T, h, w)`` in ``[0, 1]``, token or weight
            counts that differ from T, or non-positive ``columns`` or ``cell_size``.
    """
    maps = np.asarray(token_maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise InputError(
            f"token_strip: token_maps must be (T, height, width) with T >= 1, got shape "
            f"{maps.shape}."
        )
    count = maps.shape[0]
    if len(tokens) != count or (weights is not None and len(weights) != count):
        weight_count = "no" if weights is None else len(weights)
        raise InputError(
            f"token_strip: got {count} maps, {len(tokens)} tokens and {weight_count} "
            "weights; give one token (and one weight) per map."
        )
    if columns < 1 or cell_size < 1:
        raise InputError(
            f"token_strip: columns and cell_size must be positive, got {columns} and {cell_size}."
        )
    if not 0 <= alpha <= 1:
        raise InputError(f"token_strip: alpha must lie in [0, 1], got {alpha}.")
    colours = colour_map(cmap)
    unit_maps = [_unit_map(token_map, "token_strip") for token_map in maps]

    thumbnail = _thumbnail(image.convert("RGB"), cell_size)
    font = ImageFont.load_default()
    line_height = _text_height(font)
    caption_lines = 1 if weights is None else 2
    cell_width = thumbnail.width
    cell_height = thumbnail.height + caption_lines * (line_height + _TEXT_MARGIN) + _TEXT_MARGIN
    grid_columns = min(columns, count)
    grid_rows = math.ceil(count / columns)
    strip = Image.new(
        "RGB",
        (
            grid_columns * cell_width + (grid_columns + 1) * _CELL_GAP,
            grid_rows * cell_height + (grid_rows + 1) * _CELL_GAP,
        ),
        "white",
    )
    draw = ImageDraw.Draw(strip)
    for index, unit_map in enumerate(unit_maps):
        left = _CELL_GAP + (index % columns) * (cell_width + _CELL_GAP)
        top = _CELL_GAP + (index // columns) * (cell_height + _CELL_GAP)
        strip.paste(_blend(thumbnail, unit_map, alpha, colours), (left, top))
        captions = [_shown_token(tokens[index])]
        if weights is not None:
            captions.append(f"{float(weights[index]):.3g}")
        for line, caption in enumerate(captions):
            text = _fitted_text(caption, font, cell_width)
            text_top = top + thumbnail.height + _TEXT_MARGIN + line * (line_height + _TEXT_MARGIN)
            draw.text((left, text_top), text, fill="black", font=font)
    return strip


def save_png(img: Image.Image, path: str | PathLike[str]) -> Path:
    """Write an image as PNG, creating the parent folders.

    Args:
        img: the image to write.
        path: where to write it; the ``.png`` suffix is not added.

    Returns:
        The path written, as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    img.save(target, format="PNG")
    return target


def _unit_map(map2d: npt.ArrayLike, caller: str) -> npt.NDArray[np.float32]:
    """A finite 2-D float32 map in ``[0, 1]``, or an InputError from ``caller``."""
    array = np.asarray(map2d, dtype=np.float32)
    if array.ndim != 2 or array.size == 0 or not np.isfinite(array).all():
        raise InputError(
            f"{caller}: expected a finite, non-empty 2-D map, got shape {array.shape}."
        )
    if array.min() < -_RANGE_TOLERANCE or array.max() > 1 + _RANGE_TOLERANCE:
        raise InputError(
            f"{caller}: expected a map in [0, 1], found values in [{array.min():.4g}, "
            f"{array.max():.4g}]. Normalise it with dexar_core.heatmap.minmax first."
        )
    return np.clip(array, 0, 1)


def _blend(
    rgb_image: Image.Image,
    unit_map: npt.NDArray[np.float32],
    alpha: float,
    palette: Colormap,
) -> Image.Image:
    """Blend the coloured map (resized to the image) onto an RGB image."""
    resized = np.clip(upsample(unit_map, rgb_image.size), 0, 1)
    colours = np.asarray(palette(resized), dtype=np.float32)[..., :3]
    pixels = np.asarray(rgb_image, dtype=np.float32) / 255
    blended = (1 - alpha) * pixels + alpha * colours
    return Image.fromarray(np.round(blended * 255).astype(np.uint8))


def _thumbnail(rgb_image: Image.Image, cell_size: int) -> Image.Image:
    """The image scaled so that its longer side is ``cell_size``."""
    scale = cell_size / max(rgb_image.size)
    size = (max(1, round(rgb_image.width * scale)), max(1, round(rgb_image.height * scale)))
    return rgb_image.resize(size, Image.Resampling.BICUBIC)


def _shown_token(token: str) -> str:
    """The token as a caption: control characters escaped, blank tokens quoted."""
    shown = token.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return shown if shown.strip() else repr(token)


def _fitted_text(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """``text`` cut (with a trailing ``..``) to fit ``width`` pixels in ``font``."""
    if not isinstance(font, ImageFont.FreeTypeFont):
        # The bitmap fallback font only encodes Latin-1.
        text = text.encode("latin-1", "replace").decode("latin-1")
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "..") > width:
        text = text[:-1]
    return text + ".."


def _text_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    """Height of one caption line in ``font``."""
    # Text is drawn from its top-left anchor, so the line must reach the bbox's bottom.
    return math.ceil(font.getbbox("Ag|")[3])
