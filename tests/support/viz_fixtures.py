"""Explanations with known maps, built without a model, for the figure and report tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dexar_core.explanation import Explanation
from dexar_core.values import Grid

GRID_SIDE = 4
IMAGE_SIZE = (64, 48)
#: The grid covers the image's middle 48 of 64 columns (a centre crop): the 8-pixel
#: bands left and right were not seen.
PIXEL_BOX = (8.0, 0.0, 56.0, 48.0)
TOKENS = ("red", "circle", "the")
WEIGHTS = (0.8, 0.2, 0.0)
#: Each token's hot cell (row, column): token 0 top-left, token 1 bottom-right, token 2
#: top-right; the raw maps of token 1 and 2 are a tenth of token 0's strength.
HOT_CELLS = ((0, 0), (GRID_SIDE - 1, GRID_SIDE - 1), (0, GRID_SIDE - 1))
RAW_SCALES = (1.0, 0.1, 0.1)


def picture(size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """A red square on the left half, a blue one on the right, on grey."""
    pixels = np.full((size[1], size[0], 3), 90, dtype=np.uint8)
    pixels[size[1] // 4 : size[1] // 2, size[0] // 8 : size[0] // 2] = (220, 30, 30)
    pixels[size[1] // 2 : 3 * size[1] // 4, size[0] // 2 : 7 * size[0] // 8] = (30, 30, 220)
    return Image.fromarray(pixels)


def known_explanation(
    *,
    pixel_box: tuple[float, float, float, float] = PIXEL_BOX,
    raw: bool = True,
    images: bool = True,
    heads: tuple[int, int] = (2, 3),
) -> Explanation:
    """Three tokens, each hot in one cell of a 4x4 grid, weights (0.8, 0.2, 0)."""
    raw_maps = np.zeros((len(TOKENS), GRID_SIDE, GRID_SIDE), np.float32)
    for index, ((row, column), scale) in enumerate(zip(HOT_CELLS, RAW_SCALES)):
        raw_maps[index] += 0.01 * scale
        raw_maps[index, row, column] = scale
    normalised = np.stack([(m - m.min()) / (m.max() - m.min()) for m in raw_maps])
    raw_sequence = np.tensordot(np.asarray(WEIGHTS, np.float32), raw_maps, axes=1)
    sequence = (raw_sequence - raw_sequence.min()) / (raw_sequence.max() - raw_sequence.min())
    layers, head_count = heads
    head_weights = np.arange(len(TOKENS) * layers * head_count, dtype=np.float32).reshape(
        len(TOKENS), layers, head_count
    )
    grid = Grid(
        name="image 0",
        height=GRID_SIDE,
        width=GRID_SIDE,
        positions=np.arange(GRID_SIDE * GRID_SIDE),
        pixel_box=pixel_box,
    )
    return Explanation(
        method="dexar",
        options={"layers": "all"},
        model_id="known-model",
        adapter="llava",
        prompt="what is red?",
        answer="red circle the",
        token_ids=[5, 6, 7],
        tokens=TOKENS,
        grids=[grid],
        image_sizes=[IMAGE_SIZE],
        token_maps=[normalised],
        sequence_maps=[sequence],
        raw_token_maps=[raw_maps] if raw else [],
        raw_sequence_maps=[raw_sequence] if raw else [],
        token_weights=WEIGHTS,
        head_weights=head_weights,
        layers=list(range(layers)),
        timings={"generate": 0.5, "explain": 1.25},
        metadata={"dtype": "float32", "device": "cpu"},
        images=[picture()] if images else [],
    )
