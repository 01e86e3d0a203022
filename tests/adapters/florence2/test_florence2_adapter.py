"""The Florence-2 adapter: layout, task prompts, generation, errors and explain() end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core import errors
from dexar_core.api import explain, load
from dexar_core.records import LoadedModel
from dexar_florence2.adapter import Florence2Adapter, davit_grid
from dexar_florence2.tiny import build_tiny_florence2


def noise_image(seed: int = 0, size: tuple[int, int] = (64, 64)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_florence2(seed=0)


@pytest.fixture(scope="module")
def loaded(tiny):
    model, processor = tiny
    return LoadedModel(model=model, processor=processor, adapter=Florence2Adapter(), model_id="t")


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, processor = tiny
    folder = tmp_path_factory.mktemp("tiny-florence2")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_the_davit_grid_follows_the_stage_strides(tiny):
    model, _ = tiny
    assert davit_grid(model.config.vision_config, 64, 64) == (8, 8)
    features = model.get_image_features(torch.zeros(1, 3, 64, 64))
    assert features.last_hidden_state.shape[-2:] == (8, 8)
    # one global pooled token before the 64 grid tokens
    assert features.pooler_output.shape[1] == 65


def test_layout_leaves_the_global_token_out_of_v_and_text(loaded):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(0, (80, 48))], "<CAPTION>")
    layout = adapter.locator.locate(prepared)
    ids = prepared.inputs["input_ids"][0].numpy()
    image_positions = np.flatnonzero(ids == loaded.model.config.image_token_id)
    assert image_positions.tolist() == list(range(65))
    assert layout.visual_positions.tolist() == list(range(1, 65))
    assert not layout.visual_mask[0] and not layout.text_mask[0]
    tokens = loaded.tokenizer.convert_ids_to_tokens(ids[layout.text_mask].tolist())
    assert tokens == ["<s>", "what", "does", "the", "image", "describe", "?", "</s>"]
    assert layout.text_set("prompt_only").sum() == 6  # <s> and </s> are template
    (grid,) = layout.grids
    assert grid.shape == (8, 8) and grid.pixel_box == (0.0, 0.0, 80.0, 48.0)
    assert layout.projection is None


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("<CAPTION>", "what does the image describe?"),
        ("<DETAILED_CAPTION>", "describe in detail what is shown in the image."),
        ("what color is the circle?", "what color is the circle?"),
    ],
)
def test_task_prompts_and_free_text_pass_through_the_processor(loaded, prompt, expected):
    prepared = loaded.adapter.prepare(loaded, [noise_image(1)], prompt)
    assert prepared.prompt_text == prompt
    ids = prepared.inputs["input_ids"][0].tolist()
    text = loaded.tokenizer.decode(ids[65:], skip_special_tokens=True)
    assert text == expected


@pytest.mark.parametrize("prompt", ["<SEGMENT_EVERYTHING>", "<CAPTION> the dog"])
def test_an_unknown_or_misused_task_prompt_is_a_clear_input_error(loaded, prompt):
    with pytest.raises(errors.InputError, match=r"(?i)task token"):
        loaded.adapter.prepare(loaded, [noise_image(2)], prompt)


def test_two_images_are_refused(loaded):
    with pytest.raises(errors.InputError, match="exactly one image"):
        loaded.adapter.prepare(loaded, [noise_image(2), noise_image(3)], "<CAPTION>")


def test_generation_starts_from_the_decoder_start_token(loaded):
    adapter, model = loaded.adapter, loaded.model
    prepared = adapter.prepare(loaded, [noise_image(4)], "<CAPTION>")
    assert adapter.decoder_prefix(loaded) == [model.config.text_config.decoder_start_token_id]
    with torch.no_grad():
        sequences = model.generate(**prepared.inputs, max_new_tokens=3, do_sample=False)
    assert sequences[0, 0].item() == model.generation_config.decoder_start_token_id
    answer = adapter.generate(loaded, prepared, 3)
    stops = {model.generation_config.eos_token_id, model.generation_config.pad_token_id}
    expected = []
    for token in sequences[0, 1:].tolist():
        if token in stops:
            break
        expected.append(token)
    assert answer == expected


def test_teacher_forcing_puts_the_answer_after_the_decoder_start(loaded):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(5)], "<CAPTION>")
    ids = adapter.encode_answer(loaded, prepared, "a red circle")
    forced = adapter.teacher_forced(loaded, prepared, ids)
    start = loaded.model.generation_config.decoder_start_token_id
    assert forced.inputs["decoder_input_ids"][0].tolist() == [start, *ids]
    assert forced.query_rows == (0, 1, 2)
    assert forced.key_length == prepared.inputs["input_ids"].shape[1]


def test_decoder_parts_name_the_cross_attention_and_no_final_norm(loaded):
    parts = loaded.adapter.decoder_parts(loaded.model)
    decoder = loaded.model.model.language_model.decoder
    assert [a is layer.encoder_attn for a, layer in zip(parts.attentions, decoder.layers)] == [
        True,
        True,
    ]
    assert parts.final_norm is None  # post-LN: never normalise twice
    assert parts.lm_head_weight is loaded.model.lm_head.weight


def test_save_and_load_give_identical_logits(tiny, saved):
    model, processor = tiny
    reloaded = load(str(saved))
    assert isinstance(reloaded.adapter, Florence2Adapter)
    inputs = processor(images=[noise_image(6)], text=["<CAPTION>"], return_tensors="pt")
    again = reloaded.processor(images=[noise_image(6)], text=["<CAPTION>"], return_tensors="pt")
    assert all(torch.equal(inputs[key], again[key]) for key in inputs)
    decoder_ids = torch.tensor([[2, 10, 11]])
    with torch.no_grad():
        before = model(**inputs, decoder_input_ids=decoder_ids).logits
        after = reloaded.model(**again, decoder_input_ids=decoder_ids).logits
    assert torch.allclose(before, after, atol=1e-6)


def test_explain_end_to_end_gives_maps_over_the_davit_grid(saved):
    loaded = load(str(saved))
    result = explain(loaded, noise_image(7, (96, 64)), "<CAPTION>", answer="a red circle")
    assert result.adapter == "florence2"
    assert result.tokens == ("a", "red", "circle")
    assert result.token_map_stack.shape == (3, 8, 8)
    assert result.sequence_map.shape == (8, 8)
    assert result.head_weights.shape == (3, 2, 4)
    assert result.metadata["explained_attention"].startswith("decoder cross-attention")
    token_maps, sequence = result.upsample()
    assert token_maps.shape == (3, 64, 96) and sequence.shape == (64, 96)


@pytest.mark.parametrize("answer", ["", "   "])
def test_an_empty_caption_target_is_a_clear_input_error(saved, answer):
    loaded = load(str(saved))
    with pytest.raises(errors.InputError, match="is blank"):
        explain(loaded, noise_image(8), "<CAPTION>", answer=answer)


def test_a_prompt_longer_than_the_encoder_is_refused(loaded):
    with pytest.raises(errors.InputError, match="encoder tokens long"):
        loaded.adapter.prepare(loaded, [noise_image(9)], " ".join(["circle"] * 80))


def test_the_embedded_architecture_has_one_davit_stage_and_the_same_grid():
    from dexar_florence2.tiny import build_shapes_florence2

    model, processor = build_shapes_florence2(seed=0)
    assert len(model.config.vision_config.embed_dim) == 1
    assert davit_grid(model.config.vision_config, 64, 64) == (8, 8)
    inputs = processor(images=[noise_image(10)], text=["<CAPTION>"], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 65
    with torch.no_grad():
        model(**inputs, decoder_input_ids=torch.tensor([[2]]))
