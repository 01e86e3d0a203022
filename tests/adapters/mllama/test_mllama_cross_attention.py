"""Llama 3.2 Vision (mllama): DEX-AR on the cross-attention layers, in float32.

The image enters through the gated cross-attention layers only; their keys are the
vision features of every tile (a CLS feature, then the patches). V must be the real
tiles' patches on the image, and T_set empty (docs/architectures.md); the one pass
against the definition on those layers: tests/adapters/test_family_one_pass.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from noise_images import noise_image

from dexar_core.api import explain

QUESTION = "what color is the circle?"


def test_the_explained_layers_are_the_cross_attention_layers(tiny):
    parts = tiny.adapter.decoder_parts(tiny.model)
    decoder = tiny.adapter.language_model(tiny.model)
    assert [list(decoder.layers).index(layer) for layer in parts.layers] == [3, 8]
    assert all(
        type(attention).__name__ == "MllamaTextCrossAttention" for attention in parts.attentions
    )


def test_v_is_the_real_tiles_patches_and_t_set_is_empty(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(130, 48)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    (grid,) = layout.grids
    per_tile = tiny.model.model.vision_model.num_patches  # 1 CLS + 4x4 patches
    # 1 x 3 tiles of 4x4 patches; the image (130 x 48) leaves the last column and the
    # bottom of the canvas in padding
    assert layout.sequence_length == 4 * per_tile
    assert grid.shape == (4, 10)
    keys = np.flatnonzero(layout.visual_mask)
    assert not np.isin(np.arange(0, 4 * per_tile, per_tile), keys).any(), "a CLS feature is in V"
    assert keys.max() < 3 * per_tile, "the padding tile is in V"
    assert not layout.text_mask.any()
    left, top, right, bottom = grid.pixel_box
    assert (left, top) == (0, 0) and 130 <= right < 130 + 14 and 48 <= bottom < 48 + 14


@pytest.mark.slow
def test_explain_free_run_and_given_answer_with_zero_text_sensitivity(tiny):
    given = explain(tiny, [noise_image(320, 200)], QUESTION, answer="a red circle")
    free = explain(tiny, [noise_image(90, 90), noise_image(150, 60, 2)], QUESTION, max_new_tokens=2)
    assert free.generated and [grid.name for grid in free.grids] == ["image 0", "image 1"]
    for result in (given, free):
        assert result.layers == (0, 1)
        assert all(np.isfinite(stack).all() for stack in result.token_maps)
        # no key is text: S_text is 0 and delta is the largest visual sensitivity
        assert (result.token_weights >= 0).all()
