"""Llama 3.2 Vision (mllama): DEX-AR on the cross-attention layers, in float32.

The image enters through the gated cross-attention layers only; their keys are the
vision features of every tile (a CLS feature, then the patches). The one-pass engine
must equal the straightforward reference to 1e-5 relative on those layers, for one
tile and several, for two images and with eager attention; V must be the real tiles'
patches on the image, and T_set empty (docs/architectures.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llava_fixtures import noise_image
from one_pass import one_pass_error
from PIL import Image

from dexar_core.api import explain
from dexar_core.records import LoadedModel
from dexar_mllama.adapter import MllamaAdapter
from dexar_mllama.tiny import build_tiny_mllama

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    return noise_image(seed, (width, height))


_MODELS: dict[str, LoadedModel] = {}


def _loaded(attn_implementation: str = "sdpa") -> LoadedModel:
    if attn_implementation not in _MODELS:
        torch.set_num_threads(2)
        model, processor = build_tiny_mllama(seed=1, attn_implementation=attn_implementation)
        _MODELS[attn_implementation] = LoadedModel(
            model=model, processor=processor, adapter=MllamaAdapter(), model_id="tiny-mllama"
        )
    return _MODELS[attn_implementation]


CASES = {
    "square, one tile": ("sdpa", lambda: [_image(50, 50)]),
    "wide, three tiles": ("sdpa", lambda: [_image(48, 130)]),
    "two images": ("sdpa", lambda: [_image(100, 100), _image(40, 90, 1)]),
    "tall, eager": ("eager", lambda: [_image(120, 40)]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_one_pass_matches_the_definition_on_the_cross_attention(case):
    attn_implementation, images = CASES[case]
    error = one_pass_error(_loaded(attn_implementation), images(), QUESTION, "a red circle")
    assert error <= TOLERANCE


def test_the_explained_layers_are_the_cross_attention_layers():
    loaded = _loaded()
    parts = loaded.adapter.decoder_parts(loaded.model)
    decoder = loaded.adapter.language_model(loaded.model)
    assert [list(decoder.layers).index(layer) for layer in parts.layers] == [3, 8]
    assert all(
        type(attention).__name__ == "MllamaTextCrossAttention" for attention in parts.attentions
    )


def test_v_is_the_real_tiles_patches_and_t_set_is_empty():
    loaded = _loaded()
    prepared = loaded.adapter.prepare(loaded, [_image(48, 130)], QUESTION)
    layout = loaded.adapter.locator.locate(prepared)
    (grid,) = layout.grids
    per_tile = loaded.model.model.vision_model.num_patches  # 1 CLS + 4x4 patches
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
def test_explain_free_run_and_given_answer_with_zero_text_sensitivity():
    loaded = _loaded()
    given = explain(loaded, [_image(200, 320)], QUESTION, answer="a red circle")
    free = explain(loaded, [_image(90, 90), _image(60, 150, 2)], QUESTION, max_new_tokens=2)
    assert free.generated and [grid.name for grid in free.grids] == ["image 0", "image 1"]
    for result in (given, free):
        assert result.layers == (0, 1)
        assert all(np.isfinite(stack).all() for stack in result.token_maps)
        # no key is text: S_text is 0 and delta is the largest visual sensitivity
        assert (result.token_weights >= 0).all()


def test_a_video_is_refused():
    from dexar_core.errors import InputError
    from dexar_core.images import Video

    loaded = _loaded()
    video = Video(frames=[_image(40, 40, seed) for seed in range(2)])
    with pytest.raises(InputError, match="explains images only"):
        loaded.adapter.prepare(loaded, [video], QUESTION)
