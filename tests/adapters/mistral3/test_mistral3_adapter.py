"""Mistral 3: native-resolution grids, the row-end tokens in neither V nor T_set, perturbed
inputs as the processor makes them (the one pass against the definition:
tests/adapters/test_family_one_pass.py; explain() and the CLI on a saved tiny checkpoint:
tests/adapters/test_family_explain.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from noise_images import noise_image

from dexar_core.errors import InputError

QUESTION = "what color is the circle?"


def test_grids_follow_the_native_resolution_and_row_ends_are_neither_set(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(150, 50), noise_image(40, 70, 1)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    # 150 x 50 fits longest_edge 112 as 112 x 37, rounded up to whole 28 px cells: 2 x 4
    # tokens; 40 x 70 (no scaling) rounds up to 3 x 2
    assert [grid.shape for grid in layout.grids] == [(2, 4), (3, 2)]
    assert [grid.pixel_box for grid in layout.grids] == [(0, 0, 150, 50), (0, 0, 40, 70)]
    ids = prepared.inputs["input_ids"][0].numpy()
    tokenizer = tiny.tokenizer
    image, row_break, row_end = (
        tokenizer.convert_tokens_to_ids(token) for token in ("[IMG]", "[IMG_BREAK]", "[IMG_END]")
    )
    assert np.array_equal(layout.visual_mask, ids == image)
    separators = np.isin(ids, [row_break, row_end])
    assert separators.sum() == 2 + 3
    assert not (layout.visual_mask | layout.text_mask)[separators].any()
    # everything else the answer sees is text: <s>, [INST], the prompt, [/INST]
    assert layout.text_mask.sum() == ids.size - (ids == image).sum() - separators.sum()
    assert (ids == tokenizer.bos_token_id).sum() == 1
    # each grid row is the [IMG] run before one row end
    first = layout.grids[0].positions.reshape(2, 4)
    assert ids[first[0, -1] + 1] == row_break and ids[first[1, -1] + 1] == row_end


def test_perturbed_inputs_are_the_processors_own(tiny):
    images = [noise_image(150, 50), noise_image(40, 70, 1)]
    prepared = tiny.adapter.prepare(tiny, images, QUESTION)
    others = [noise_image(150, 50, 7), noise_image(40, 70, 8)]
    perturbed = tiny.adapter.prepare_perturbed(tiny, prepared, others)
    expected = tiny.adapter.prepare(tiny, others, QUESTION)
    for key in ("pixel_values", "image_sizes", "input_ids"):
        assert torch.equal(perturbed.inputs[key], expected.inputs[key]), key


def test_a_prompt_with_an_image_too_many_is_refused(tiny):
    with pytest.raises(InputError, match=r"\[IMG\]"):
        tiny.adapter.prepare(tiny, [noise_image(56, 56)], "[INST][IMG][IMG]what[/INST]")
