"""The offline word tokenizer and the tiny LLaVA builder (real transformers classes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core.errors import InputError
from dexar_core.zoo.tokenizer import build_word_tokenizer
from dexar_llava.tiny import build_tiny_llava, format_prompt

QUESTION = "what color is the circle?"


@pytest.fixture(scope="module")
def image() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_llava(seed=0)


def _inputs(processor, image):
    return processor(images=image, text=format_prompt(QUESTION), return_tensors="pt")


def test_word_tokenizer_encodes_words_punctuation_and_image_token():
    tokenizer = build_word_tokenizer(["what color is the", "circle top left"])
    ids = tokenizer("What color is the circle? <image>").input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["<s>", "what", "color", "is", "the", "circle", "?", "<image>"]
    assert tokenizer.image_token == "<image>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "what color is the circle?"
    assert tokenizer.convert_ids_to_tokens(tokenizer("zebra").input_ids) == ["<s>", "<unk>"]
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id] == [0, 1, 2]


def test_word_tokenizer_round_trips_through_save_pretrained(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_word_tokenizer(["top left circle"])
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.image_token == "<image>"
    assert loaded("top left circle.").input_ids == tokenizer("top left circle.").input_ids


@pytest.mark.parametrize("words", [["top-left"], ["what?"], []])
def test_word_tokenizer_rejects_unusable_word_lists(words):
    with pytest.raises(InputError, match="build_word_tokenizer"):
        build_word_tokenizer(words)


def test_processor_expands_image_token_to_the_patch_grid(tiny, image):
    model, processor = tiny
    inputs = _inputs(processor, image)
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)
    image_positions = inputs["input_ids"][0] == model.config.image_token_id
    assert int(image_positions.sum()) == 64
    # One contiguous block right after "<s> user :".
    assert image_positions.nonzero().flatten().tolist() == list(range(3, 67))


def test_chat_template_renders_the_prompt_format(tiny):
    _, processor = tiny
    conversation = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    ]
    rendered = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert rendered == format_prompt(QUESTION) == f"USER: <image>\n{QUESTION} ASSISTANT:"


def test_save_and_load_give_identical_logits(tiny, image, tmp_path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded_model = LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)

    inputs = _inputs(processor, image)
    loaded_inputs = _inputs(loaded_processor, image)
    for key in inputs:
        assert torch.equal(inputs[key], loaded_inputs[key]), key
    with torch.no_grad():
        expected = model(**inputs).logits
        found = loaded_model(**loaded_inputs).logits
    assert torch.equal(expected, found)


@pytest.mark.parametrize(
    ("kv_heads", "attn_implementation"), [(None, "sdpa"), (2, "sdpa"), (2, "eager")]
)
def test_forward_and_generate_run(image, kv_heads, attn_implementation):
    model, processor = build_tiny_llava(kv_heads=kv_heads, attn_implementation=attn_implementation)
    assert model.config.text_config._attn_implementation == attn_implementation
    inputs = _inputs(processor, image)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(logits).all()
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] <= inputs["input_ids"].shape[1] + 3


def test_same_seed_gives_same_weights_and_keeps_global_random_state():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first, _ = build_tiny_llava(seed=5, text_layers=1, vision_layers=1, hidden_size=32)
    after = torch.rand(1)
    second, _ = build_tiny_llava(seed=5, text_layers=1, vision_layers=1, hidden_size=32)
    assert torch.equal(before, after)
    second_weights = second.state_dict()
    for name, weight in first.state_dict().items():
        assert torch.equal(weight, second_weights[name]), name


@pytest.mark.parametrize(
    "overrides",
    [{"patch_size": 7}, {"heads": 3}, {"kv_heads": 3}, {"image_size": 0}],
)
def test_bad_sizes_are_rejected(overrides):
    with pytest.raises(InputError, match="build_tiny_llava"):
        build_tiny_llava(**overrides)
