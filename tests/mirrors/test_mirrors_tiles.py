"""On the LLaVA-NeXT mirror, every tile layout the published pinpoints allow lies where it looks.

``llava-v1.6-mistral-7b-hf`` chooses, per image, one of five tile layouts (1x2, 2x1, 2x2,
3x1 and 1x3 tiles of the base side) and removes the rows or columns that fall on the
padding. For an image of each layout, and a large one, a spot painted into the image must
change the model's input most, within each grid dexar reports (the base image and the
assembled tiles), at the cell whose pixel box holds the spot, within one cell.
"""

from __future__ import annotations

import numpy as np
import pytest
from mirror_inputs import visual_unit_inputs
from PIL import Image, ImageDraw

NEXT = "llava-v1.6-mistral-7b-hf"
PROMPT = "what is in the image?"
LAYOUTS = {
    # (width, height) of the image -> (tile rows, tile columns) the processor chooses
    "1x2": ((320, 160), (1, 2)),
    "2x1": ((160, 320), (2, 1)),
    "2x2": ((200, 200), (2, 2)),
    "3x1": ((100, 300), (3, 1)),
    "1x3": ((300, 100), (1, 3)),
    # padded to 2x2: unpadding drops the rows that fall on the padding
    "large 16:9": ((1280, 720), (2, 2)),
}
SPOTS = ((0.25, 0.3), (0.7, 0.6), (0.45, 0.85))
"""Where the spots go, as fractions of the image."""


def painted(size: tuple[int, int], centre: tuple[float, float] | None, side: float) -> Image.Image:
    image = Image.new("RGB", size, (110, 110, 110))
    if centre is not None:
        x, y = centre
        ImageDraw.Draw(image).rectangle(
            (x - side / 2, y - side / 2, x + side / 2, y + side / 2), fill=(255, 240, 20)
        )
    return image


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_each_tile_layout_reports_the_cell_at_a_painted_spot(layout, loaded_mirror):
    from transformers.image_processing_utils import select_best_resolution

    (width, height), tiles = layout
    loaded = loaded_mirror(NEXT)
    config = loaded.model.config
    tile = config.vision_config.image_size
    best = select_best_resolution((height, width), config.image_grid_pinpoints)
    assert (best[0] // tile, best[1] // tile) == tiles, "the image does not pick that layout"

    base_features, grids = visual_unit_inputs(loaded, painted((width, height), None, 0), PROMPT)
    assert [grid.name for grid in grids] == ["image 0, base", "image 0, tiles"]
    base, tiled = grids
    side = tile // config.vision_config.patch_size
    assert (base.height, base.width) == (side, side)
    # unpadding keeps every patch row and column the image covers, and only those
    assert tiled.height <= tiles[0] * side and tiled.width <= tiles[1] * side
    cell_width = (tiled.pixel_box[2] - tiled.pixel_box[0]) / tiled.width
    cell_height = (tiled.pixel_box[3] - tiled.pixel_box[1]) / tiled.height
    for fx, fy in SPOTS:
        spot = (fx * width, fy * height)
        features, _ = visual_unit_inputs(
            loaded, painted((width, height), spot, max(cell_width, cell_height)), PROMPT
        )
        change = np.linalg.norm(features - base_features, axis=1)
        start = 0
        for grid in grids:
            cells = grid.height * grid.width
            row, col = divmod(int(np.argmax(change[start : start + cells])), grid.width)
            start += cells
            left, top, right, bottom = grid.pixel_box
            cell = ((right - left) / grid.width, (bottom - top) / grid.height)
            centre = (left + (col + 0.5) * cell[0], top + (row + 0.5) * cell[1])
            assert abs(centre[0] - spot[0]) <= cell[0] and abs(centre[1] - spot[1]) <= cell[1], (
                f"{grid.name}: spot at {spot} but the most-changed cell is centred at {centre} "
                f"(cells {cell[0]:.1f} x {cell[1]:.1f} px)"
            )
