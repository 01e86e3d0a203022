"""LLaVA-OneVision: the grids of one image (tiled, shrunk by anyres-max) and of several
(base views), where a spot is found in each grid, and the newline tokens in neither set
(the one pass against the definition: tests/adapters/test_family_one_pass.py; explain(),
the CLI and the video refusal: tests/adapters/test_family_explain.py)."""

from __future__ import annotations

import pytest
from noise_images import noise_image
from painted_spots import assert_spot_found_in_each_grid

from dexar_llava.onevision import shrunk_grid

QUESTION = "what color is the circle?"


def test_grids_of_one_image_and_of_several(tiny):
    one = tiny.adapter.prepare(tiny, [noise_image(300, 300)], QUESTION).facts.grids
    # 300 px fits 5 x 5 tiles of 60 px: 20 x 20 features, shrunk by sqrt(400 / (4 * 16)) = 2.5
    assert [(grid.name, grid.shape) for grid in one] == [
        ("image 0, base", (4, 4)),
        ("image 0, tiles", (8, 8)),
    ]
    assert shrunk_grid(tiny.model.config, 300, 300).pixel_box == (0.0, 0.0, 300.0, 300.0)
    several = tiny.adapter.prepare(tiny, [noise_image(80, 48), noise_image(30, 60, 1)], QUESTION)
    assert [(grid.name, grid.shape) for grid in several.facts.grids] == [
        ("image 0", (4, 4)),
        ("image 1", (4, 4)),
    ]


def test_newline_tokens_are_in_neither_set(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(80, 48)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    ids = prepared.inputs["input_ids"][0].numpy()
    image_tokens = ids == tiny.model.config.image_token_id
    newlines = image_tokens & ~layout.visual_mask
    tiles = prepared.facts.grids[1]
    assert newlines.sum() == tiles.height  # one after each row of the tile grid
    assert not layout.text_mask[newlines].any()
    assert layout.text_mask.sum() == ids.size - image_tokens.sum()


@pytest.mark.parametrize(
    ("size", "spot"),
    [((80, 48), (20, 30)), ((80, 48), (62, 12)), ((300, 300), (230, 80)), ((48, 110), (24, 90))],
)
def test_a_painted_spot_is_found_in_each_grid_at_its_place(tiny, size, spot):
    assert_spot_found_in_each_grid(tiny, size, spot, side=min(size) / 4)
