"""The grids dexar reports for LLaVA-NeXT lie where the model sees the image.

A bright spot is painted on a plain image; the token whose language-model input (the
merged ``inputs_embeds``, image features in place of the placeholders) changes most, in
each grid, must be the grid cell whose pixel box holds the spot, within one cell. That
checks the base grid and the assembled, unpadded tile grid against transformers' own
packing, on square, wide, tall and large (downscaled) images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from dexar_core.records import LoadedModel
from dexar_llava.next import LlavaNextAdapter
from dexar_llava.tiny_next import build_tiny_llava_next


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    torch.set_num_threads(2)
    model, processor = build_tiny_llava_next(seed=3)
    return LoadedModel(
        model=model, processor=processor, adapter=LlavaNextAdapter(), model_id="tiny-next"
    )


def _language_model_input(loaded: LoadedModel, image: Image.Image):
    """The prepared prompt and the merged embeddings the language model receives."""
    prepared = loaded.adapter.prepare(loaded, [image], "where is the spot?")
    seen: list[torch.Tensor] = []
    handle = loaded.model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["inputs_embeds"].detach()[0]),
        with_kwargs=True,
    )
    try:
        with torch.no_grad():
            loaded.model(**prepared.inputs)
    finally:
        handle.remove()
    return prepared, seen[0]


def _spot_image(size: tuple[int, int], centre: tuple[float, float] | None) -> Image.Image:
    image = Image.new("RGB", size, (90, 90, 90))
    if centre is not None:
        radius = max(2, min(size) // 12)
        x, y = centre[0] * size[0], centre[1] * size[1]
        ImageDraw.Draw(image).ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 255)
        )
    return image


def _cell(grid, x: float, y: float) -> tuple[float, float]:
    """The (row, col) of original pixel ``(x, y)`` in a grid, as fractional cells."""
    left, top, right, bottom = grid.pixel_box
    return (y - top) / (bottom - top) * grid.height, (x - left) / (right - left) * grid.width


SIZES = {
    "square": (56, 56),
    "wide": (120, 50),
    "tall": (44, 130),
    "large": (640, 400),
}
SPOTS = [(0.2, 0.25), (0.75, 0.3), (0.5, 0.5), (0.3, 0.8), (0.85, 0.85)]


@pytest.mark.parametrize("shape", list(SIZES))
def test_the_most_changed_token_of_each_grid_lies_on_the_spot(loaded, shape):
    size = SIZES[shape]
    prepared, plain = _language_model_input(loaded, _spot_image(size, None))
    grids = prepared.facts.grids
    assert [grid.name for grid in grids] == ["image 0, base", "image 0, tiles"]
    for spot in SPOTS:
        painted_prepared, painted = _language_model_input(loaded, _spot_image(size, spot))
        assert painted_prepared.facts.grids == grids
        change = (painted - plain).norm(dim=-1).numpy()
        x, y = spot[0] * size[0], spot[1] * size[1]
        for grid in grids:
            cell = int(np.argmax(change[grid.positions]))
            found = divmod(cell, grid.width)
            expected = _cell(grid, x, y)
            assert abs(found[0] + 0.5 - expected[0]) <= 1.5, (shape, spot, grid.name)
            assert abs(found[1] + 0.5 - expected[1]) <= 1.5, (shape, spot, grid.name)


@pytest.mark.parametrize("shape", list(SIZES))
def test_the_tile_grid_covers_the_original_image_and_newlines_lie_on_no_grid(loaded, shape):
    size = SIZES[shape]
    prepared, plain = _language_model_input(loaded, _spot_image(size, None))
    _, painted = _language_model_input(loaded, _spot_image(size, (0.5, 0.5)))
    base, tiles = prepared.facts.grids
    assert base.pixel_box == (0.0, 0.0, float(size[0]), float(size[1]))
    # Unpadding keeps whole patches: the box is the image to within one patch's padding.
    cell_width = (tiles.pixel_box[2] - tiles.pixel_box[0]) / tiles.width
    cell_height = (tiles.pixel_box[3] - tiles.pixel_box[1]) / tiles.height
    for edge, image_edge, cell in zip(
        tiles.pixel_box, (0, 0, *size), (cell_width, cell_height) * 2
    ):
        assert abs(edge - image_edge) < cell
    layout = loaded.adapter.locator.locate(prepared)
    ids = prepared.inputs["input_ids"][0].numpy()
    image_positions = np.flatnonzero(ids == loaded.model.config.image_token_id)
    newlines = np.setdiff1d(image_positions, np.concatenate([base.positions, tiles.positions]))
    assert newlines.size == tiles.height
    # Each row of the tile grid ends with one newline token: the same learned vector,
    # untouched by the pixels, in neither V nor the text set.
    assert np.array_equal(newlines, tiles.positions.reshape(tiles.height, -1)[:, -1] + 1)
    newline = loaded.model.model.image_newline.detach()
    torch.testing.assert_close(plain[newlines], newline.expand(newlines.size, -1))
    assert float((painted - plain)[newlines].abs().max()) == 0.0
    assert not layout.visual_mask[newlines].any() and not layout.text_mask[newlines].any()
    assert layout.visual_mask[image_positions].sum() == base.positions.size + tiles.positions.size
