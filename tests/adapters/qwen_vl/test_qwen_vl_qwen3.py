"""Qwen3-VL on the Qwen-VL adapter: DeepStack, interleaved M-RoPE, timestamped videos (float32).

DeepStack adds visual features from three vision blocks into the hidden states of the
first three decoder layers at the visual positions. The keys at those positions keep
holding image information at every layer, so V stays the visual positions; the one-pass
engine must still equal the straightforward reference to 1e-5 relative, with layers
that receive DeepStack features and one that does not.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from llava_fixtures import noise_image
from one_pass import one_pass_error
from PIL import Image

from dexar_core.api import explain
from dexar_core.images import Video
from dexar_core.records import LoadedModel
from dexar_qwen_vl.adapter import QwenVLAdapter
from dexar_qwen_vl.tiny import build_tiny_qwen_vl

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    return noise_image(seed, (width, height))


def _video(frames: int, height: int = 32, width: int = 48) -> Video:
    return Video(frames=[_image(height, width, 10 + seed) for seed in range(frames)])


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    torch.set_num_threads(2)
    model, processor = build_tiny_qwen_vl(
        version="3", seed=1, hidden_size=64, text_layers=4, vision_layers=3
    )
    adapter = QwenVLAdapter()
    adapter.model_class = "Qwen3VLForConditionalGeneration"
    return LoadedModel(model=model, processor=processor, adapter=adapter, model_id="tiny-qwen3")


CASES = {
    "square": lambda: [_image(64, 64)],
    "wide": lambda: [_image(48, 80)],
    "two images": lambda: [_image(48, 80), _image(64, 32, 1)],
    "image and odd video": lambda: [_image(32, 48), _video(3)],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_one_pass_matches_the_definition_through_the_deepstack_layers(case, loaded):
    error = one_pass_error(loaded, CASES[case](), QUESTION, "a red circle")
    assert error <= TOLERANCE


def test_v_is_where_deepstack_adds_its_features(loaded):
    """The positions DeepStack writes into are exactly V (every grid cell, nothing else)."""
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [_image(48, 80), _video(4)], QUESTION)
    layout = adapter.locator.locate(prepared)
    language_model = adapter.language_model(loaded.model)
    written: list[np.ndarray] = []
    original = language_model._deepstack_process

    def record(hidden_states, visual_pos_masks, visual_embeds):
        written.append(visual_pos_masks[0].cpu().numpy())
        return original(hidden_states, visual_pos_masks, visual_embeds)

    with mock.patch.object(language_model, "_deepstack_process", record), torch.no_grad():
        loaded.model(**prepared.inputs)
    deepstack_layers = len(loaded.model.config.vision_config.deepstack_visual_indexes)
    assert len(written) == deepstack_layers == 3
    for positions in written:
        np.testing.assert_array_equal(positions, layout.visual_mask)


def test_a_video_is_one_grid_per_temporal_patch_with_timestamps_in_the_text_set(loaded):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [_video(4)], QUESTION)
    layout = adapter.locator.locate(prepared)
    assert [grid.name for grid in layout.grids] == ["video 0, frames 0-1", "video 0, frames 2-3"]
    first, second = (grid.positions for grid in layout.grids)
    between = np.arange(first[-1] + 1, second[0])
    # Qwen3-VL writes "<t seconds>" and the vision markers between the temporal patches:
    # text, never visual
    assert between.size > 2
    assert layout.text_mask[between].all() and not layout.visual_mask[between].any()


@pytest.mark.slow
def test_free_run_and_given_answer_explain_images_and_a_video(loaded):
    visuals = [_image(72, 40), _video(2)]
    given = explain(loaded, visuals, QUESTION, answer="a red circle")
    assert [grid.name for grid in given.grids] == ["image 0", "video 0, frames 0-1"]
    free = explain(loaded, [_image(40, 72)], QUESTION, max_new_tokens=2)
    assert free.generated and len(free.tokens) >= 1
    for result in (given, free):
        assert all(np.isfinite(stack).all() for stack in result.token_maps)
