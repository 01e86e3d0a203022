"""Gemma 3: which keys are visual, the bidirectional image mask, where each pan-and-scan
crop's grid lies (the one pass against the definition, sliding windows and crops
included: tests/adapters/test_family_one_pass.py; explain() and the CLI on a saved
pan-and-scan checkpoint: tests/adapters/test_family_explain.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from noise_images import noise_image
from painted_spots import assert_spot_found_in_each_grid
from tiny_families import processor_settings

from dexar_core.errors import InputError
from dexar_gemma3.adapter import pan_and_scan_crops, pan_and_scan_settings

QUESTION = "what color is the circle?"


@pytest.fixture
def scanned(tiny):
    with processor_settings(tiny, do_pan_and_scan=True, pan_and_scan_min_crop_size=24) as loaded:
        yield loaded


# --- which keys are visual -----------------------------------------------------------------


def test_image_markers_are_text_and_soft_tokens_are_visual(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(90, 40)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    ids = prepared.inputs["input_ids"][0].numpy()
    tokenizer = tiny.tokenizer
    soft = ids == tiny.model.config.image_token_id
    assert np.array_equal(layout.visual_mask, soft) and soft.sum() == 16
    for marker in (tokenizer.boi_token_id, tokenizer.eoi_token_id):
        (position,) = np.flatnonzero(ids == marker)
        assert layout.text_mask[position] and not layout.visual_mask[position]
    # one <bos>: the chat template writes it, the tokenizer adds no second one
    assert (ids == tokenizer.bos_token_id).sum() == 1


def test_answer_tokens_are_text_in_the_bidirectional_mask(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(56, 56)], QUESTION)
    forced = tiny.adapter.teacher_forced(tiny, prepared, [5, 6, 7])
    types = forced.inputs["token_type_ids"][0]
    assert types.shape[0] == forced.key_length and not types[-3:].any()
    # without the token types the image block is causal and the logits change: the
    # model's own two-way image attention is what the explanation runs
    with torch.no_grad():
        kept = tiny.model(**forced.inputs).logits
        inputs = {key: value for key, value in forced.inputs.items() if key != "token_type_ids"}
        dropped = tiny.model(**inputs).logits
    assert not torch.allclose(kept, dropped, atol=1e-6)


# --- pan-and-scan crops ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [(250, 60), (60, 250), (130, 100), (100, 100), (700, 40)])
def test_crop_boxes_are_transformers_own_crops(size):
    from transformers import Gemma3ImageProcessorPil

    settings = {
        "do_pan_and_scan": True,
        "pan_and_scan_min_crop_size": 20,
        "pan_and_scan_max_num_crops": 4,
        "pan_and_scan_min_ratio_to_activate": 1.2,
    }
    width, height = size
    index = np.arange(width * height).reshape(1, height, width)
    crops = Gemma3ImageProcessorPil().pan_and_scan(
        index, **{key: value for key, value in settings.items() if key != "do_pan_and_scan"}
    )
    expected = [
        (c[0, 0, 0] % width, c[0, 0, 0] // width, c[0, 0, -1] % width + 1, c[0, -1, 0] // width + 1)
        for c in crops
    ]
    assert [tuple(int(v) for v in box) for box in pan_and_scan_crops(size, settings)] == expected


def test_pan_and_scan_gives_a_grid_per_crop_where_it_came_from(scanned):
    prepared = scanned.adapter.prepare(scanned, [noise_image(150, 50)], QUESTION)
    grids = prepared.facts.grids
    assert [grid.name for grid in grids] == ["image 0", *[f"image 0, crop {k}" for k in range(3)]]
    assert [grid.pixel_box for grid in grids] == [
        (0.0, 0.0, 150.0, 50.0),
        (0.0, 0.0, 50.0, 50.0),
        (50.0, 0.0, 100.0, 50.0),
        (100.0, 0.0, 150.0, 50.0),
    ]
    assert pan_and_scan_settings(scanned.processor)["do_pan_and_scan"]


@pytest.mark.parametrize("spot", [(20, 25), (75, 12), (130, 38)])
def test_a_painted_spot_is_found_in_its_crop_at_its_place(scanned, spot):
    assert_spot_found_in_each_grid(scanned, (150, 50), spot, side=12)


def test_a_prompt_with_a_marker_too_many_is_refused(tiny):
    prompt = "<start_of_image><start_of_image>" + QUESTION
    with pytest.raises(InputError, match="<start_of_image>"):
        tiny.adapter.prepare(tiny, [noise_image(56, 56)], prompt)
