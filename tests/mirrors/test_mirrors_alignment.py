"""On every mirror, the grid cell dexar reports for a visual token lies where that token looks.

A spot painted into the original image changes the model's input most at the visual
token that sees it; the cell and pixel box dexar's layout gives that token must lie at
the spot (within one cell), on square, non-square and large images. A spot painted where
the processor crops (LLaVA-1.5's centre crop) must change nothing and be reported unseen.
"""

from __future__ import annotations

import numpy as np
import pytest
from mirror_inputs import visual_unit_inputs
from mirrors import MIRRORS
from PIL import Image, ImageDraw

from dexar_core.seen import seen_mask

PROMPT = "what is in the image?"
SIZES = {
    "square": (200, 200),
    "wide": (320, 180),
    # the heaviest: resizing a large frame costs more than the tiny model's forward
    "large": pytest.param((1280, 720), marks=pytest.mark.slow),
}
SPOTS = ((0.3, 0.3), (0.72, 0.55), (0.45, 0.85))
"""Where the spots go, as fractions of the part of the image the model sees."""


def grey(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, (110, 110, 110))


def painted(size: tuple[int, int], centre: tuple[float, float], side: float) -> Image.Image:
    image = grey(size)
    x, y = centre
    ImageDraw.Draw(image).rectangle(
        (x - side / 2, y - side / 2, x + side / 2, y + side / 2), fill=(255, 240, 20)
    )
    return image


def reported_cell(grids, change: np.ndarray) -> tuple[float, float, float, float]:
    """``(x, y, cell_width, cell_height)``: centre and size of the most-changed cell."""
    index = int(np.argmax(change))
    for grid in grids:
        if index < grid.height * grid.width:
            row, col = divmod(index, grid.width)
            left, top, right, bottom = grid.pixel_box
            width, height = (right - left) / grid.width, (bottom - top) / grid.height
            return left + (col + 0.5) * width, top + (row + 0.5) * height, width, height
        index -= grid.height * grid.width
    raise AssertionError("the change has more entries than the grids have cells")


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("name", MIRRORS)
def test_reported_cell_lies_at_a_painted_spot(name, size, loaded_mirror):
    loaded = loaded_mirror(name)
    base, grids = visual_unit_inputs(loaded, grey(size), PROMPT)
    left, top, right, bottom = grids[0].pixel_box
    # the spot is one cell of the finest grid (LLaVA-OneVision's tiles are finer than its
    # base view): a spot of several cells has no one cell that must change most
    side = min(
        min(
            (g.pixel_box[2] - g.pixel_box[0]) / g.width,
            (g.pixel_box[3] - g.pixel_box[1]) / g.height,
        )
        for g in grids
    )
    for fx, fy in SPOTS:
        spot = (left + fx * (right - left), top + fy * (bottom - top))
        features, _ = visual_unit_inputs(loaded, painted(size, spot, side), PROMPT)
        change = np.linalg.norm(features - base, axis=1)
        x, y, width, height = reported_cell(grids, change)
        assert abs(x - spot[0]) <= width and abs(y - spot[1]) <= height, (
            f"spot at {spot} but the most-changed token's cell is centred at {(x, y)} "
            f"(cells {width:.1f} x {height:.1f} px)"
        )


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("name", MIRRORS)
def test_cropped_off_spot_changes_nothing_and_is_reported_unseen(name, size, loaded_mirror):
    loaded = loaded_mirror(name)
    base, grids = visual_unit_inputs(loaded, grey(size), PROMPT)
    seen = seen_mask(grids, size)
    left, top, right, bottom = grids[0].pixel_box
    if left < 1 and top < 1 and right > size[0] - 1 and bottom > size[1] - 1:
        # the processor keeps the whole image (a resize, no crop): all of it is seen
        assert seen.all()
        return
    # LLaVA-1.5 centre-crops: the middle of the left band never reaches the model
    spot = (left / 2, size[1] / 2)
    assert not seen[int(spot[1]), int(spot[0])]
    features, _ = visual_unit_inputs(loaded, painted(size, spot, left / 3), PROMPT)
    assert np.array_equal(features, base)
