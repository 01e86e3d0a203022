"""The BLIP-2 adapter: query layout, the query-to-patch projection, prompts, errors, explain()."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from PIL import Image

from dexar_blip2.adapter import Blip2Adapter, format_blip2_prompt
from dexar_blip2.tiny import build_tiny_blip2, format_prompt
from dexar_core import errors
from dexar_core.api import explain, load
from dexar_core.heatmap import minmax
from dexar_core.records import LoadedModel


def noise_image(seed: int = 0, size: tuple[int, int] = (64, 64)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def sharpen_qformer(model) -> None:
    """Scale the Q-Former's cross-attention queries so its attention is far from uniform
    (a random Q-Former attends almost uniformly, which makes every projected map flat)."""
    with torch.no_grad():
        for layer in model.qformer.encoder.layer:
            layer.crossattention.attention.query.weight.mul_(40.0)


@pytest.fixture(scope="module", params=["opt", "t5"])
def loaded(request):
    model, processor = build_tiny_blip2(seed=0, language_model=request.param)
    sharpen_qformer(model)
    return LoadedModel(model=model, processor=processor, adapter=Blip2Adapter(), model_id="t")


@pytest.fixture(scope="module")
def saved_opt(tmp_path_factory):
    model, processor = build_tiny_blip2(seed=1)
    sharpen_qformer(model)
    folder = tmp_path_factory.mktemp("tiny-blip2-opt")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_the_prompt_follows_blip2s_question_answer_form():
    assert format_blip2_prompt("what color is it?") == "Question: what color is it? Answer:"
    assert format_blip2_prompt("") == ""  # an empty prompt asks for a caption
    assert format_blip2_prompt("Question: why? Answer:") == "Question: why? Answer:"
    assert format_prompt("what") == "Question: what Answer:"


def test_query_tokens_are_not_all_equal_and_the_vision_tower_sees_the_pixels():
    model, _ = build_tiny_blip2(seed=2)
    queries = model.query_tokens[0]
    assert float(queries.detach().std()) > 0.01
    assert not torch.allclose(queries[0], queries[1])
    with torch.no_grad():
        one = model.vision_model(torch.zeros(1, 3, 64, 64)).last_hidden_state
        two = model.vision_model(torch.ones(1, 3, 64, 64)).last_hidden_state
    assert float((one - two).abs().max()) > 1e-2


def test_v_is_the_query_tokens_and_the_template_is_not_prompt(loaded):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(0)], "what color is the circle?")
    layout = adapter.locator.locate(prepared)
    assert layout.visual_positions.tolist() == list(range(32))
    (grid,) = layout.grids
    assert grid.shape == (1, 32)
    ids = prepared.inputs["input_ids"][0].numpy()
    prompt_only = loaded.tokenizer.convert_ids_to_tokens(ids[layout.text_set("prompt_only")])
    assert prompt_only == ["what", "color", "is", "the", "circle", "?"]
    assert layout.text_mask.sum() > len(prompt_only)  # "question :", "answer :" are template


def test_the_mean_projection_is_the_qformer_cross_attention_without_cls(loaded):
    adapter, model = loaded.adapter, loaded.model
    prepared = adapter.prepare(loaded, [noise_image(1)], "what color is the circle?")
    projection = adapter.locator.locate(prepared).projection
    assert projection.name == "qformer_cross_attention_mean"
    assert projection.weights.shape == (32, 64)
    (grid,) = projection.grids
    assert grid.shape == (8, 8) and grid.positions.tolist() == list(range(64))
    assert projection.details["cross_attention_layers"] == 2
    previous = model.qformer.config._attn_implementation
    model.qformer.config._attn_implementation = "eager"  # sdpa returns no probabilities
    try:
        with torch.no_grad():
            patches = model.vision_model(prepared.inputs["pixel_values"]).last_hidden_state
            cross = model.qformer(
                query_embeds=model.query_tokens,
                encoder_hidden_states=patches,
                output_attentions=True,
            ).cross_attentions
    finally:
        model.qformer.config._attn_implementation = previous
    expected = torch.stack([a[0] for a in cross]).mean(dim=(0, 1))[:, 1:]
    np.testing.assert_allclose(projection.weights, expected.numpy(), rtol=1e-5, atol=1e-7)
    # each row is a query's attention over the patches: the CLS share is what is missing
    assert (projection.weights.sum(axis=1) < 1).all()


def test_explain_draws_maps_over_the_patch_grid_from_projected_relevance(loaded):
    adapter = loaded.adapter
    image = noise_image(2, (80, 48))
    result = explain(loaded, image, "what color is the circle?", answer="a red circle")
    assert result.grids[0].shape == (8, 8) and result.grids[0].pixel_box == (0, 0, 80, 48)
    assert result.token_map_stack.shape == (3, 8, 8)
    assert result.metadata["projection"]["name"] == "qformer_cross_attention_mean"
    assert "not in the DEX-AR paper" in result.metadata["projection"]["extension"]
    # the same numbers by hand: DEX-AR over the queries, then g_t @ Abar
    from dexar_core.engine import attention_gradients
    from dexar_core.methods.dexar import DexarMethod

    prepared = adapter.prepare(loaded, [image], "what color is the circle?")
    forced = adapter.teacher_forced(
        loaded, prepared, adapter.encode_answer(loaded, prepared, "a red circle")
    )
    layout = adapter.locator.locate(prepared)
    record = attention_gradients(loaded, forced, layout.with_length(forced.key_length), (0, 1))
    relevance = DexarMethod().explain(record)
    by_hand = relevance.sequence_relevance.astype(np.float64) @ layout.projection.weights
    np.testing.assert_allclose(result.sequence_map, minmax(by_hand.reshape(8, 8)), atol=1e-5)
    assert result.sequence_map.max() == 1.0 and result.sequence_map.min() == 0.0


def test_the_gradient_weighted_projection_is_an_option(loaded):
    adapter = Blip2Adapter(projection="gradient")
    weighted = attrs.evolve(loaded, adapter=adapter)
    result = explain(weighted, noise_image(3), "what color is the circle?", answer="red")
    projection = result.metadata["projection"]
    assert projection["name"] == "qformer_cross_attention_gradient"
    assert projection["target"] == "sum of the answer tokens' final logits"
    assert result.token_map_stack.shape == (1, 8, 8)
    assert np.isfinite(result.sequence_map).all()
    parameters = [p.requires_grad for p in loaded.model.parameters()]
    assert parameters == [p.requires_grad for p in weighted.model.parameters()]
    assert loaded.model.config.qformer_config._attn_implementation == "sdpa"


def test_an_unknown_projection_is_refused():
    with pytest.raises(errors.MethodError, match="projection must be one of"):
        Blip2Adapter(projection="rollout")


def test_two_images_are_refused(loaded):
    with pytest.raises(errors.InputError, match="exactly one image"):
        loaded.adapter.prepare(loaded, [noise_image(4), noise_image(5)], "what?")


def test_a_prompt_too_long_for_opts_context_is_a_clear_input_error(saved_opt):
    loaded = load(str(saved_opt))
    assert isinstance(loaded.adapter, Blip2Adapter)
    question = " ".join(["circle"] * 100)
    with pytest.raises(errors.InputError, match="context is 128 positions"):
        explain(loaded, noise_image(6), question, answer="red")
    fits = " ".join(["circle"] * 80)
    with pytest.raises(errors.InputError, match="explain a shorter answer"):
        explain(loaded, noise_image(6), fits, answer=" ".join(["red"] * 20))


def test_save_and_load_round_trip(saved_opt):
    loaded = load(str(saved_opt))
    ids = loaded.processor(
        images=[noise_image(7)], text=[format_prompt("what?")], return_tensors="pt"
    )["input_ids"][0]
    assert int((ids == loaded.model.config.image_token_id).sum()) == 32
    result = explain(loaded, noise_image(7), "what color is the circle?", max_new_tokens=3)
    assert result.generated and 1 <= len(result.token_ids) <= 3
    assert result.adapter == "blip2"


def test_instructblip_is_refused_with_a_reason(tmp_path):
    from transformers import InstructBlipConfig

    InstructBlipConfig().save_pretrained(tmp_path)
    with pytest.raises(errors.UnsupportedModelError, match="InstructBLIP is not supported yet"):
        load(str(tmp_path))


def test_the_embedded_architecture_is_a_width_64_blip2_with_32_queries():
    from dexar_blip2.tiny import build_shapes_blip2

    model, _ = build_shapes_blip2(seed=0)
    assert model.config.num_query_tokens == 32
    assert model.config.text_config.hidden_size == 64
    assert model.config.use_decoder_only_language_model
