"""InternVL: the flat image block split into tiles and the thumbnail as the processor tiles,
perturbed pixels as a full prepare gives them, and the refusals (the one pass against the
definition: tests/adapters/test_family_one_pass.py; explain() and the CLI:
tests/adapters/test_family_explain.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from noise_images import noise_image
from tiny_families import processor_settings

from dexar_core.errors import InputError
from dexar_internvl.adapter import tile_arrangement

QUESTION = "what color is the circle?"


# --- where the views lie ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "tiles"),
    [((32, 32), (1, 1)), ((60, 60), (2, 2)), ((150, 50), (2, 6)), ((40, 90), (5, 2))],
)
def test_the_tiles_are_the_processors(tiny, size, tiles):
    image = noise_image(*size)
    prepared = tiny.adapter.prepare(tiny, [image], QUESTION)
    rows, cols = tiles
    assert tile_arrangement(tiny.processor.image_processor, *size) == tiles
    pixels = tiny.processor.image_processor(images=[image], crop_to_patches=True)
    views = rows * cols + (rows * cols > 1)
    assert pixels["num_patches"] == [views]
    grids = prepared.facts.grids
    whole = (0.0, 0.0, *map(float, size))
    if views == 1:
        assert [(grid.name, grid.shape, grid.pixel_box) for grid in grids] == [
            ("image 0", (2, 2), whole)
        ]
        return
    tile_grid, thumbnail = grids
    assert (
        tile_grid.name == f"image 0, {rows}x{cols} tiles" and thumbnail.name == "image 0, thumbnail"
    )
    assert tile_grid.shape == (2 * rows, 2 * cols) and thumbnail.shape == (2, 2)
    assert tile_grid.pixel_box == thumbnail.pixel_box == whole
    assert thumbnail.positions.min() > tile_grid.positions.max()


def test_the_block_markers_are_never_visual(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(90, 40)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    ids = prepared.inputs["input_ids"][0].numpy()
    assert np.array_equal(layout.visual_mask, ids == tiny.model.config.image_token_id)
    markers = np.isin(ids, [tiny.processor.start_image_token_id, tiny.processor.end_image_token_id])
    assert markers.sum() == 2 and not layout.visual_mask[markers].any()
    assert layout.text_mask[markers].all()


def test_two_images_in_prompt_order(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(90, 40), noise_image(32, 32, 1)], QUESTION)
    assert [(grid.name, grid.image_index) for grid in prepared.facts.grids] == [
        ("image 0, 1x2 tiles", 0),
        ("image 0, thumbnail", 0),
        ("image 1", 1),
    ]


def test_perturbed_pixels_are_tiled_as_a_full_prepare_tiles_them(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(90, 40)], QUESTION)
    other = noise_image(90, 40, 7)
    perturbed = tiny.adapter.prepare_perturbed(tiny, prepared, [other])
    full = tiny.adapter.prepare(tiny, [other], QUESTION)
    assert torch.equal(perturbed.inputs["pixel_values"], full.inputs["pixel_values"])


# --- refusals -----------------------------------------------------------------------------


def test_a_block_at_odds_with_the_tiling_is_refused(tiny):
    image = noise_image(90, 40)
    text = tiny.adapter.format_prompt(tiny, QUESTION, 1)
    inputs = tiny.processor(text=text, images=[image], return_tensors="pt")
    # as a processor saved with other settings
    refused = pytest.raises(InputError, match="block holds 12 image tokens but its 1x1 tiles")
    with processor_settings(tiny, max_patches=1), refused:
        tiny.adapter.image_tokens.image_facts(tiny, inputs, [image])
