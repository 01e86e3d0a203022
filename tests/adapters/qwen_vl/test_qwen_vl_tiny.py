"""The tiny Qwen2-VL / Qwen2.5-VL builders: real classes, Qwen tokens, real processors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core.errors import InputError
from dexar_qwen_vl.tiny import (
    CHAT_TEMPLATE,
    build_shapes_qwen2_vl,
    build_tiny_qwen2_5_vl,
    build_tiny_qwen2_vl,
    build_tiny_qwen_vl,
    format_prompt,
    mrope_sections,
)

QUESTION = "what color is the circle?"


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module", params=["2", "2.5"])
def tiny(request):
    torch.set_num_threads(2)
    return build_tiny_qwen_vl(version=request.param, seed=0)


def test_builders_give_the_real_classes():
    from transformers import (
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    model, processor = build_tiny_qwen2_vl(seed=0)
    assert type(model) is Qwen2VLForConditionalGeneration
    assert type(processor) is Qwen2VLProcessor
    assert type(processor.image_processor) is Qwen2VLImageProcessor
    assert type(processor.video_processor) is Qwen2VLVideoProcessor
    model, processor = build_tiny_qwen2_5_vl(seed=0)
    assert type(model) is Qwen2_5_VLForConditionalGeneration
    assert type(processor) is Qwen2_5_VLProcessor
    vision = model.config.vision_config
    # window attention in every block but the last, over 2x2 merged tokens
    assert list(vision.fullatt_block_indexes) == [vision.depth - 1]
    assert vision.window_size == 2 * vision.patch_size * vision.spatial_merge_size


@pytest.mark.parametrize("head_dim", [8, 16, 32, 64, 128])
def test_mrope_sections_sum_to_half_the_head(head_dim):
    sections = mrope_sections(head_dim)
    assert sum(sections) == head_dim // 2 and min(sections) > 0
    assert mrope_sections(128) == [16, 24, 24]  # the released models' sections


def test_config_mrope_sections_match_the_text_heads(tiny):
    model, _ = tiny
    text = model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2


def test_tokenizer_knows_the_qwen_special_tokens(tiny):
    _, processor = tiny
    tokenizer = processor.tokenizer
    specials = [
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    ids = tokenizer.convert_tokens_to_ids(specials)
    assert len(set(ids)) == len(specials) and tokenizer.unk_token_id not in ids
    assert set(ids) <= set(tokenizer.all_special_ids)
    assert tokenizer.image_token == "<|image_pad|>" and tokenizer.video_token == "<|video_pad|>"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    encoded = tokenizer(format_prompt(QUESTION), add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in encoded
    assert tokenizer.decode(encoded, skip_special_tokens=True) == (
        "system you are a helpful assistant. user what color is the circle? assistant"
    )


def test_chat_template_renders_the_prompt_format(tiny):
    _, processor = tiny
    assert processor.chat_template == CHAT_TEMPLATE
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    ]
    rendered = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert rendered == format_prompt(QUESTION)
    mixed = [{"role": "user", "content": [{"type": "image"}, {"type": "video"}]}]
    rendered = processor.apply_chat_template(mixed, add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|video_pad|>" in rendered


def test_processor_resizes_dynamically_and_expands_the_pads(tiny):
    model, processor = tiny
    inputs = processor(text=format_prompt(QUESTION), images=[_image(48, 80)], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 6, 10]]  # 48x80 at patch 8: no resize
    pads = inputs["input_ids"][0] == model.config.image_token_id
    assert int(pads.sum()) == 6 * 10 // 4
    assert inputs["mm_token_type_ids"][0].bool().tolist() == pads.tolist()
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))


def test_save_and_load_give_identical_logits(tiny, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded_model = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded_model) is type(model) and type(loaded_processor) is type(processor)
    assert loaded_processor.chat_template == CHAT_TEMPLATE
    assert loaded_processor.image_processor.size["longest_edge"] == 96 * 96
    text, image = format_prompt(QUESTION), _image(40, 72)
    expected = processor(text=text, images=[image], return_tensors="pt")
    actual = loaded_processor(text=text, images=[image], return_tensors="pt")
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    with torch.no_grad():
        assert torch.allclose(model(**expected).logits, loaded_model(**actual).logits, atol=1e-6)


def test_same_seed_same_weights_and_caller_random_state_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first, _ = build_tiny_qwen2_vl(seed=3, text_layers=1, vision_layers=1)
    after = torch.rand(1)
    second, _ = build_tiny_qwen2_vl(seed=3, text_layers=1, vision_layers=1)
    assert torch.equal(before, after)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_shapes_builder_admits_the_training_sizes_at_their_own_size():
    model, processor = build_shapes_qwen2_vl(seed=0, image_size=64)
    assert model.config.vision_config.patch_size == 8
    assert model.config.text_config.rope_parameters["rope_theta"] == 10.0
    for (height, width), grid in {(64, 64): 4, (96, 96): 6, (80, 112): (5, 7)}.items():
        image = _image(height, width)
        inputs = processor(text=format_prompt(QUESTION), images=[image], return_tensors="pt")
        rows, cols = grid if isinstance(grid, tuple) else (grid, grid)
        assert inputs["image_grid_thw"].tolist() == [[1, 2 * rows, 2 * cols]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"version": "4"}, "version"),
        ({"hidden_size": 0}, "hidden_size to be a positive integer"),
        ({"heads": 3}, "heads to divide hidden_size"),
        ({"kv_heads": 3}, "kv_heads to divide heads"),
        ({"hidden_size": 48, "heads": 4, "vision_hidden_size": 48}, "multiple of 8"),
        ({"min_pixels": 5000, "max_pixels": 1000}, "exceeds max_pixels"),
        ({"min_pixels": 100, "max_pixels": 200}, "below one merged patch"),
        ({"min_pixels": 0}, "min_pixels to be a positive integer"),
    ],
)
def test_bad_builder_arguments_raise_input_error(options, message):
    with pytest.raises(InputError, match=message):
        build_tiny_qwen_vl(**options)
