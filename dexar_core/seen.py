"""Which pixels of an original image the model saw: the complement is 'not seen'.

A processor may show the model only part of an image: LLaVA-1.5's CLIP processor
resizes the short side and centre-crops a square, so the sides of a 16:9 frame (44 %
of it) never reach the vision tower. Each :class:`~dexar_core.values.Grid` records, as
its ``pixel_box``, the part of the original image it covers; the union of the boxes of
one image's grids is what the model saw of it. A map is zero outside that union because
the model had nothing there to look at, not because it looked and found nothing: the
pictures draw that part as 'not seen', and the metrics leave it out of their
denominators (``valid & seen``).

Pixel ``(x, y)`` is seen when a box holds it after the box corners are rounded to whole
pixels, exactly as :func:`dexar_core.heatmap.paste_to_image` lays a map onto the image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from dexar_core.errors import InputError
from dexar_core.values import Grid, VisualLayout


def _grids_of(source: Any) -> tuple[Grid, ...]:
    """The grids of a layout (its projection's when it has one), an Explanation, or grids."""
    if isinstance(source, VisualLayout):
        return source.projection.grids if source.projection is not None else source.grids
    grids = getattr(source, "grids", source)
    if not isinstance(grids, Iterable):
        raise InputError(
            f"seen_mask: expected a VisualLayout, an Explanation or a sequence of Grid, "
            f"got {type(source).__name__}."
        )
    grids = tuple(grids)
    if not all(isinstance(grid, Grid) for grid in grids):
        raise InputError("seen_mask: every entry of the grids must be a dexar_core.values.Grid.")
    return grids


def seen_boxes(source: Any, image_index: int = 0) -> tuple[tuple[int, int, int, int], ...]:
    """The whole-pixel boxes ``(left, top, right, bottom)`` of one image the model saw.

    Args:
        source: a :class:`VisualLayout`, an :class:`~dexar_core.explanation.Explanation`
            or a sequence of :class:`Grid`.
        image_index: which input image.

    Returns:
        One box per grid of that image (a video's frame groups share theirs), rounded as
        the maps are pasted; empty when no grid belongs to the image.
    """
    boxes = [grid_box(grid) for grid in _grids_of(source) if grid.image_index == image_index]
    return tuple(dict.fromkeys(boxes))


def grid_box(grid: Grid) -> tuple[int, int, int, int]:
    """The whole-pixel ``(left, top, right, bottom)`` of what one grid saw, as maps are pasted."""
    left, top, right, bottom = (math.floor(value + 0.5) for value in grid.pixel_box)
    return left, top, right, bottom


def seen_mask(source: Any, image_size: tuple[int, int], image_index: int = 0) -> np.ndarray:
    """``bool[H, W]``: True where the model saw the original image, False where it did not.

    Args:
        source: a :class:`VisualLayout`, an :class:`~dexar_core.explanation.Explanation`
            or a sequence of :class:`Grid` (what a picture or a metric has at hand).
        image_size: the original image's ``(width, height)``.
        image_index: which input image.

    Returns:
        A boolean array of shape ``(height, width)``; all True when the processor kept
        the whole image (a resize without crop), False on every cropped-off band.

    Raises:
        InputError: when no grid belongs to the image, or the size is not two positive
            whole numbers.
    """
    if len(image_size) != 2 or any(int(v) != v or v < 1 for v in image_size):
        raise InputError(
            f"seen_mask: image_size must be (width, height) in positive whole pixels, "
            f"got {image_size!r}."
        )
    width, height = int(image_size[0]), int(image_size[1])
    boxes = seen_boxes(source, image_index)
    if not boxes:
        raise InputError(
            f"seen_mask: no grid belongs to image {image_index}; give the layout or the "
            "explanation of the image whose pixels you ask about."
        )
    seen = np.zeros((height, width), dtype=bool)
    for left, top, right, bottom in boxes:
        rows = slice(max(top, 0), max(min(bottom, height), 0))
        seen[rows, max(left, 0) : max(min(right, width), 0)] = True
    return seen


def seen_fraction(source: Any, image_size: tuple[int, int], image_index: int = 0) -> float:
    """The fraction of the original image's pixels the model saw, in ``[0, 1]``."""
    return float(seen_mask(source, image_size, image_index).mean())


def scored_pixels(
    valid: Any, source: Any, mask_shape: tuple[int, ...], image_index: int = 0
) -> np.ndarray:
    """The pixels a metric counts: those ``valid`` marks (all when None) that were seen.

    Metrics take this as their ``valid`` mask, so a cropped-off band is in no
    denominator: a map cannot be faulted for missing an object the model never saw, nor
    credited for the zero it holds there.

    Args:
        valid: the dataset's valid pixels (e.g. VOC's non-void), boolean of
            ``mask_shape``, or None.
        source: the layout, explanation or grids of the image.
        mask_shape: ``(height, width)`` of the image's masks.
        image_index: which input image.
    """
    height, width = int(mask_shape[0]), int(mask_shape[1])
    seen = seen_mask(source, (width, height), image_index)
    if valid is None:
        return seen
    valid_pixels = np.asarray(valid, dtype=bool)
    if valid_pixels.shape != seen.shape:
        raise InputError(
            f"scored_pixels: valid has shape {valid_pixels.shape} but the image is "
            f"{height}x{width}; give one flag per pixel."
        )
    return valid_pixels & seen
