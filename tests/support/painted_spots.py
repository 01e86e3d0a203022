"""A painted spot must be found, in every grid that sees it, at its place (alignment).

For layouts of several grids over one image (tiles, crops, a base view): each grid whose
pixel box holds the spot must change most at the cell over it; a grid whose box does
not hold it must not change at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mirror_inputs import visual_unit_inputs
from PIL import Image, ImageDraw

PROMPT = "what is in the image?"


def assert_spot_found_in_each_grid(
    loaded: Any, size: tuple[int, int], spot: tuple[float, float], side: float
) -> None:
    """Paint a ``side`` px square at ``spot`` of a grey ``size`` image and check each grid."""
    grey = Image.new("RGB", size, (110, 110, 110))
    base, grids = visual_unit_inputs(loaded, grey, PROMPT)
    painted = grey.copy()
    x, y = spot
    ImageDraw.Draw(painted).rectangle(
        (x - side / 2, y - side / 2, x + side / 2, y + side / 2), fill=(255, 240, 20)
    )
    features, _ = visual_unit_inputs(loaded, painted, PROMPT)
    change = np.linalg.norm(features - base, axis=1)
    start = 0
    for grid in grids:
        cells = change[start : start + grid.height * grid.width]
        start += grid.height * grid.width
        left, top, right, bottom = grid.pixel_box
        if not (left <= x < right and top <= y < bottom):
            assert cells.max() <= 1e-5 * change.max(), f"{grid.name} does not hold the spot"
            continue
        row, col = divmod(int(np.argmax(cells)), grid.width)
        width, height = (right - left) / grid.width, (bottom - top) / grid.height
        found = (left + (col + 0.5) * width, top + (row + 0.5) * height)
        assert abs(found[0] - x) <= width and abs(found[1] - y) <= height, (
            f"{grid.name}: spot at {spot}, the most-changed cell centred at {found} "
            f"(cells {width:.1f} x {height:.1f} px)"
        )
