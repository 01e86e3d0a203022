"""Qwen-VL through the public API: load a saved checkpoint, explain images and a video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import dexar_core as dexar
from dexar_qwen_vl.tiny import build_tiny_qwen2_5_vl

QUESTION = "what color is the circle?"


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("tiny-qwen2.5-vl")
    model, processor = build_tiny_qwen2_5_vl(seed=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return dexar.load(folder)


def test_load_chooses_the_adapter_and_the_model_class(loaded):
    assert loaded.adapter.name == "qwen_vl"
    assert type(loaded.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(loaded.processor).__name__ == "Qwen2_5_VLProcessor"


def test_explain_gives_one_map_stack_per_image_and_frame_group(loaded):
    video = dexar.Video(frames=[_image(32, 48, seed) for seed in range(4)])
    explanation = dexar.explain(
        loaded, [_image(48, 80), video, _image(64, 32, 1)], QUESTION, answer="red circle"
    )
    assert [grid.name for grid in explanation.grids] == [
        "image 0",
        "video 0, frames 0-1",
        "video 0, frames 2-3",
        "image 1",
    ]
    assert [grid.image_index for grid in explanation.grids] == [0, 1, 1, 2]
    assert explanation.image_sizes == ((80, 48), (48, 32), (32, 64))
    shapes = [maps.shape for maps in explanation.token_maps]
    assert shapes == [(2, 3, 5), (2, 2, 3), (2, 2, 3), (2, 4, 2)]
    for index, grid in enumerate(explanation.grids):
        tokens, sequence = explanation.upsample(index)
        width, height = explanation.image_sizes[grid.image_index]
        assert tokens.shape == (2, height, width) and sequence.shape == (height, width)
    assert explanation.metadata["model_class"] == "Qwen2_5_VLForConditionalGeneration"


def test_prompt_only_never_lowers_a_weight(loaded):
    """Dropping the template from T_set can only lower max S_text, so raise delta."""
    images = [_image(48, 80), _image(40, 40, 3)]
    default = dexar.explain(loaded, images, QUESTION, answer="a red circle at the left")
    prompt_only = dexar.explain(
        loaded, images, QUESTION, answer="a red circle at the left", text_set="prompt_only"
    )
    assert np.all(prompt_only.token_weights >= default.token_weights - 1e-7)
    assert np.all(prompt_only.head_weights >= default.head_weights - 1e-7)


def test_a_free_run_answer_is_explained(loaded):
    explanation = dexar.explain(loaded, _image(48, 48), QUESTION, max_new_tokens=3)
    assert explanation.generated and 1 <= len(explanation.tokens) <= 3
    assert explanation.token_maps[0].shape[1:] == (3, 3)
