"""Idefics3 / SmolVLM: the tile grid and the global view where the processor put them, and
the refusals (the one pass against the definition: tests/adapters/test_family_one_pass.py;
explain() and the CLI: tests/adapters/test_family_explain.py)."""

from __future__ import annotations

import numpy as np
import pytest
from noise_images import noise_image
from tiny_families import processor_settings

from dexar_core.errors import InputError, UnsupportedModelError
from dexar_core.hf.facts import assembled_tiles
from dexar_idefics3.adapter import Idefics3Adapter

QUESTION = "what color is the circle?"


# --- where the views lie ----------------------------------------------------------------


def test_tiles_are_assembled_where_they_came_from():
    # two tiles side by side, 2x2 tokens each: tile (1, 2)'s first row follows tile (1, 1)'s
    runs = [np.array([10, 11, 12, 13]), np.array([20, 21, 22, 23])]
    assert assembled_tiles(runs, 1, 2, 2).tolist() == [10, 11, 20, 21, 12, 13, 22, 23]
    stacked = [np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8])]
    assert assembled_tiles(stacked, 2, 1, 2).tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize(
    ("size", "tiles"), [((50, 50), (4, 4)), ((150, 50), (2, 4)), ((40, 130), (4, 2))]
)
def test_the_tile_grid_is_the_processors(tiny, size, tiles):
    prepared = tiny.adapter.prepare(tiny, [noise_image(*size)], QUESTION)
    rows, cols = tiles
    info = tiny.processor.image_processor(images=[noise_image(*size)], return_row_col_info=True)
    assert (info["rows"][0][0], info["cols"][0][0]) == tiles
    tile_grid, global_grid = prepared.facts.grids
    assert tile_grid.name == f"image 0, {rows}x{cols} tiles"
    assert tile_grid.shape == (2 * rows, 2 * cols) and global_grid.shape == (2, 2)
    assert tile_grid.pixel_box == global_grid.pixel_box == (0.0, 0.0, *map(float, size))
    # the global view's tokens come after every tile's
    assert global_grid.positions.min() > tile_grid.positions.max()


def test_markers_and_separators_are_never_visual(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(90, 40)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    ids = prepared.inputs["input_ids"][0].numpy()
    tokens = tiny.tokenizer.convert_ids_to_tokens(ids.tolist())
    image_token = tiny.model.config.image_token_id
    assert np.array_equal(layout.visual_mask, ids == image_token)
    markers = [
        i for i, token in enumerate(tokens) if token.startswith(("<row_", "<global", "<fake"))
    ]
    assert markers and not layout.visual_mask[markers].any()
    assert layout.template_mask[markers].all()


def test_an_unsplit_image_is_one_global_view(tiny):
    with processor_settings(tiny, do_image_splitting=False):
        prepared = tiny.adapter.prepare(tiny, [noise_image(90, 40)], QUESTION)
    (grid,) = prepared.facts.grids
    assert (grid.name, grid.shape, grid.pixel_box) == ("image 0", (2, 2), (0.0, 0.0, 90.0, 40.0))


def test_two_images_give_their_tiles_and_global_views_in_prompt_order(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(90, 40), noise_image(40, 70, 1)], QUESTION)
    grids = prepared.facts.grids
    assert [(grid.name, grid.image_index, grid.shape) for grid in grids] == [
        ("image 0, 2x4 tiles", 0, (4, 8)),
        ("image 0, global", 0, (2, 2)),
        ("image 1, 4x3 tiles", 1, (8, 6)),
        ("image 1, global", 1, (2, 2)),
    ]
    starts = [int(grid.positions.min()) for grid in grids]
    assert starts == sorted(starts)


# --- refusals -----------------------------------------------------------------------------


def test_another_model_type_is_sent_to_its_adapter(tmp_path):
    from transformers import LlavaConfig

    LlavaConfig().save_pretrained(tmp_path)
    with pytest.raises(
        UnsupportedModelError, match=r"serves model types \['idefics3', 'smolvlm'\]"
    ):
        Idefics3Adapter().load(str(tmp_path), device=None, dtype=None, device_map=None)


def test_views_that_do_not_match_the_model_are_refused(tiny):
    image = noise_image(50, 50)
    text = tiny.adapter.format_prompt(tiny, QUESTION, 1)
    # a processor saved apart from its model, writing 3x3 tokens a view for a model of 2x2
    tiny.processor.image_seq_len = 9
    try:
        inputs = tiny.processor(text=text, images=[image], return_tensors="pt")
    finally:
        tiny.processor.image_seq_len = 4
    with pytest.raises(InputError, match="holds 9 tokens but each view of this model holds 4"):
        tiny.adapter.image_tokens.image_facts(tiny, inputs, [image])
