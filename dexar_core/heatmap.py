"""From a vector over the visual tokens to a 2D map over the image (docs/method.md §5).

The per-token map ``E^t`` and the sequence map ``E_seq`` are vectors over the visual
set V. This module turns such a vector into pictures: select one grid's tokens and
reshape them row-major (:func:`to_grid`), min-max normalise to ``[0, 1]``
(:func:`minmax`), bilinear upsampling to the image size (:func:`upsample`), and, when the
processor resized or cropped, laying the map onto the original image's canvas
(:func:`paste_to_image`). No smoothing anywhere.

Everything here is plain numpy and Pillow; sizes follow Pillow's ``(width, height)``
order, arrays numpy's ``(height, width)`` order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

from dexar_core.errors import InputError, LayoutError
from dexar_core.values import Grid

__all__ = ["minmax", "paste_to_image", "to_grid", "upsample"]


def minmax(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Min-max normalise to ``[0, 1]``, any shape.

    The arithmetic runs in float64 and the result is cast to float32. A constant input
    becomes all zeros (it carries no spatial preference), never NaN.

    Args:
        values: real numbers of any shape, e.g. a token map ``E^t`` reshaped to its grid.

    Returns:
        A float32 array of the input's shape with minimum 0 and maximum 1, or all zeros
        for a constant (or empty) input.

    Raises:
        InputError: when ``values`` holds NaN or infinity, which usually means the
            attention capture or the backward pass overflowed.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return np.zeros(array.shape, dtype=np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(
            f"minmax: expected finite values, found {int((~finite).sum())} NaN or infinite "
            f"entries out of {array.size}. A map over the visual tokens should never hold "
            "them; check the attention capture and the gradients for overflow (accumulate "
            "in float32 or float64)."
        )
    low = array.min()
    with np.errstate(over="ignore"):
        span = array.max() - low
    if not np.isfinite(span):
        # max - min overflows only for values near the float64 limit: rescale first.
        array = array / np.abs(array).max()
        low = array.min()
        span = array.max() - low
    if span == 0:
        return np.zeros(array.shape, dtype=np.float32)
    return ((array - low) / span).astype(np.float32)


def to_grid(
    vector_over_V: npt.ArrayLike, grid: Grid, visual_positions: npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """Select one grid's tokens from a vector over V and reshape them row-major.

    Args:
        vector_over_V: one value per visual token, in the order of ``visual_positions``
            (entry ``k`` belongs to key position ``visual_positions[k]``), e.g. ``E^t``.
        grid: the grid to extract; its ``positions`` are key-sequence indices in
            row-major order.
        visual_positions: the key indices of V in increasing order, as
            ``VisualLayout.visual_positions`` gives them.

    Returns:
        A float32 ``(grid.height, grid.width)`` array, not normalised.

    Raises:
        InputError: when the vector is not 1-D or its length differs from the number of
            visual positions.
        LayoutError: when the grid names a key position that is not in V.
    """
    vector = np.asarray(vector_over_V, dtype=np.float32)
    positions = np.asarray(visual_positions, dtype=np.int64).reshape(-1)
    if vector.ndim != 1 or vector.size != positions.size:
        raise InputError(
            f"to_grid: expected a 1-D vector with one value per visual position "
            f"({positions.size}), got shape {vector.shape}. Pass the map over V, not over "
            "the whole key sequence."
        )
    order = np.argsort(positions, kind="stable")
    sorted_positions = positions[order]
    slots = np.searchsorted(sorted_positions, grid.positions)
    slots = np.minimum(slots, sorted_positions.size - 1)
    found = sorted_positions[slots] == grid.positions
    if not found.all():
        missing = grid.positions[~found][:5].tolist()
        raise LayoutError(
            f"to_grid: grid {grid.name!r} names key positions {missing} that are not visual "
            "positions. Pass the visual_positions of the layout the grid belongs to."
        )
    return vector[order[slots]].reshape(grid.height, grid.width)


def upsample(map2d: npt.ArrayLike, size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Bilinear resampling of a 2D map to ``size`` (Pillow's ``BILINEAR``, mode ``"F"``).

    Upsampling is exact bilinear interpolation with half-pixel centres and clamped edges;
    downsampling widens the triangle filter (Pillow's antialiasing). Both are convex
    combinations of input values, so a map in ``[0, 1]`` stays in ``[0, 1]``. No
    smoothing beyond the interpolation itself.

    Args:
        map2d: a finite ``(height, width)`` map.
        size: the output's ``(width, height)``, e.g. ``image.size``.

    Returns:
        A float32 array of shape ``(size[1], size[0])``.

    Raises:
        InputError: for a map that is not 2-D, is empty or holds non-finite values, or
            for a size that is not two positive integers.
    """
    array = _finite_map(map2d, "upsample")
    width, height = _positive_size(size, "upsample")
    if array.shape == (height, width):
        return array.copy()
    resized = Image.fromarray(array).resize((width, height), Image.Resampling.BILINEAR)
    result = np.asarray(resized, dtype=np.float32)
    # Pillow's weights are normalised in floating point, so a value can overshoot the
    # input's range by one rounding step; clipping keeps the convexity exact.
    return np.clip(result, array.min(), array.max())


def paste_to_image(
    map2d: npt.ArrayLike,
    pixel_box: Sequence[float],
    image_size: tuple[int, int],
    *,
    renormalize: bool = False,
) -> npt.NDArray[np.float32]:
    """Lay a map that covers a box of the original image onto a full-size canvas.

    Processors that center-crop (or pad) show the model only part of the image (or more
    than it); the grid's ``pixel_box`` says where that part lies in the original image's
    pixels. The map is upsampled to the box (corners rounded to whole pixels) and pasted
    into a zero canvas; parts of the box outside the image (padding) are dropped.

    Args:
        map2d: a finite ``(height, width)`` map, usually already min-max normalised.
        pixel_box: ``(left, top, right, bottom)`` in the original image's pixels.
        image_size: the original image's ``(width, height)``.
        renormalize: min-max the map again once upsampled to the box, before pasting
            (LeGrad normalises after upsampling: bilinear interpolation lowers interior
            peaks, so the two orders differ).

    Returns:
        A float32 array of shape ``(image_size[1], image_size[0])``, zero outside the box.

    Raises:
        InputError: for a bad map or size, a box without area after rounding, or a box
            that does not overlap the image.
    """
    width, height = _positive_size(image_size, "paste_to_image")
    if len(pixel_box) != 4:
        raise InputError(
            f"paste_to_image: pixel_box must be (left, top, right, bottom), got {pixel_box!r}."
        )
    left, top, right, bottom = (math.floor(float(v) + 0.5) for v in pixel_box)
    if right <= left or bottom <= top:
        raise InputError(
            f"paste_to_image: pixel_box {tuple(pixel_box)!r} covers no whole pixel; right "
            "must exceed left and bottom must exceed top."
        )
    box_map = upsample(map2d, (right - left, bottom - top))
    if renormalize:
        box_map = minmax(box_map)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(right, width), min(bottom, height)
    if x1 <= x0 or y1 <= y0:
        raise InputError(
            f"paste_to_image: pixel_box {tuple(pixel_box)!r} lies outside the "
            f"{width}x{height} image; pass the box in the original image's pixels."
        )
    canvas = np.zeros((height, width), dtype=np.float32)
    canvas[y0:y1, x0:x1] = box_map[y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas


def _finite_map(map2d: npt.ArrayLike, caller: str) -> npt.NDArray[np.float32]:
    """A 2-D, non-empty, finite float32 copy of ``map2d``, or an InputError from ``caller``."""
    array = np.array(map2d, dtype=np.float32)
    if array.ndim != 2 or array.size == 0:
        raise InputError(
            f"{caller}: expected a non-empty 2-D map (height, width), got shape {array.shape}."
        )
    if not np.isfinite(array).all():
        raise InputError(
            f"{caller}: the map holds NaN or infinite values; normalise a finite map "
            "with minmax first."
        )
    return array


def _positive_size(size: Sequence[int], caller: str) -> tuple[int, int]:
    """``(width, height)`` as two positive ints, or an InputError from ``caller``."""
    if len(size) != 2 or any(int(v) != v or v < 1 for v in size):
        raise InputError(
            f"{caller}: size must be (width, height) in positive whole pixels, got {size!r}."
        )
    return int(size[0]), int(size[1])
