"""LLaVA-NeXT: a base and a tile grid per image in prompt order, and the variants refused
with a reason (the one pass against the definition: tests/adapters/test_family_one_pass.py;
explain() and the CLI: tests/adapters/test_family_explain.py)."""

from __future__ import annotations

import pytest
from noise_images import noise_image

from dexar_core.api import load
from dexar_core.errors import UnsupportedModelError
from dexar_core.records import LoadedModel
from dexar_llava.next import LlavaNextAdapter
from dexar_llava.tiny_next import build_tiny_llava_next

QUESTION = "what color is the circle?"


def test_two_images_give_a_base_and_a_tile_grid_each_in_prompt_order(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(90, 40), noise_image(40, 70, 1)], QUESTION)
    grids = prepared.facts.grids
    assert [(grid.name, grid.image_index) for grid in grids] == [
        ("image 0, base", 0),
        ("image 0, tiles", 0),
        ("image 1, base", 1),
        ("image 1, tiles", 1),
    ]
    assert [grid.shape for grid in grids] == [(4, 4), (4, 8), (4, 4), (8, 4)]
    starts = [int(grid.positions[0]) for grid in grids]
    assert starts == sorted(starts)


# --- refusals -----------------------------------------------------------------------------


def test_a_kept_cls_feature_is_refused_with_the_reason(tiny):
    model, processor = build_tiny_llava_next(vision_feature_select_strategy="full")
    loaded = LoadedModel(model=model, processor=processor, adapter=LlavaNextAdapter(), model_id="f")
    with pytest.raises(UnsupportedModelError, match="vision_feature_select_strategy 'default'"):
        loaded.adapter.prepare(loaded, [noise_image(56, 56)], QUESTION)


def test_a_saved_full_strategy_checkpoint_is_refused_at_load(tmp_path):
    model, processor = build_tiny_llava_next(vision_feature_select_strategy="full")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="'full'"):
        load(str(tmp_path))


def test_llava_next_video_is_refused_with_the_reason(tmp_path):
    from transformers import LlavaNextVideoConfig

    LlavaNextVideoConfig().save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="LLaVA-NeXT-Video pools each frame"):
        load(str(tmp_path))


def test_the_llava_adapter_sends_llava_next_to_its_adapter(tiny, tmp_path):
    from dexar_llava.adapter import LlavaAdapter

    tiny.model.config.save_pretrained(tmp_path)  # a LLaVA-NeXT checkpoint's config.json
    with pytest.raises(UnsupportedModelError, match="use the llava_next adapter"):
        LlavaAdapter().load(str(tmp_path), device=None, dtype=None, device_map=None)
