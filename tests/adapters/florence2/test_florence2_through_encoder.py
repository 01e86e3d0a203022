"""``through_encoder``: relevance carried back through Florence-2's encoder (docs/method.md §8.1).

The relevance matrices against hand values; on a tiny Florence-2, the explanation's maps
against a straightforward reference built from the model's own eager encoder attentions
(``output_attentions``) and their gradients from a plain ``torch.autograd.grad``; with no
encoder layer the maps are today's; the option's validation and the restored model.
"""

from __future__ import annotations

from functools import reduce

import attrs
import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core import errors
from dexar_core.api import explain
from dexar_core.hf.encoder_relevance import (
    THROUGH_ENCODER,
    gradient_relevance,
    recorded_encoder_attention,
    rollout_relevance,
)
from dexar_core.records import LoadedModel
from dexar_florence2.adapter import Florence2Adapter
from dexar_florence2.tiny import build_tiny_florence2
from dexar_plugins.testing.tolerance import assert_float32_close

PROMPT, ANSWER = "what color is the circle?", "a red circle"


def noise_image(seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (56, 72, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def loaded():
    model, processor = build_tiny_florence2(seed=3, hidden_size=64, attn_implementation="eager")
    return LoadedModel(model=model, processor=processor, adapter=Florence2Adapter(), model_id="t")


def routed(loaded: LoadedModel, route: str) -> LoadedModel:
    return attrs.evolve(loaded, adapter=Florence2Adapter(through_encoder=route))


# --- the relevance matrices by hand ------------------------------------------------------


def test_rollout_of_one_layer_by_hand():
    # one layer, two heads over three positions: mean_h A, then (I + A) / 2
    heads = np.array(
        [
            [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
            [[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]],
        ]
    )
    expected = np.array([[0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.0, 0.125, 0.875]])
    np.testing.assert_allclose(rollout_relevance([heads], 3), expected, atol=1e-12)


def test_rollout_of_identity_attention_is_the_identity():
    identity = np.broadcast_to(np.eye(4), (2, 4, 4))
    np.testing.assert_array_equal(rollout_relevance([identity, identity], 4), np.eye(4))
    np.testing.assert_array_equal(rollout_relevance([], 4), np.eye(4))


def test_rollout_conserves_relevance_over_the_inputs():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 2, 5, 5)) * 3
    attentions = list(np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True))
    relevance = rollout_relevance(attentions, 5)
    np.testing.assert_allclose(relevance.sum(axis=-1), 1.0, atol=1e-12)
    assert (relevance >= 0).all()


def test_gradient_relevance_of_one_layer_by_hand():
    attention = np.array([[[0.5, 0.5], [0.25, 0.75]], [[1.0, 0.0], [0.5, 0.5]]])
    gradient = np.array([[[2.0, -1.0], [4.0, 0.0]], [[1.0, 3.0], [0.0, 2.0]]])
    # mean_h ReLU(A * G) = [[0.75, 0], [0.5, 0.5]]; R - I is that; rows scaled to one
    expected = np.eye(2) + np.array([[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(gradient_relevance([attention], [gradient], 2), expected, atol=1e-12)


def test_gradient_relevance_without_gradient_is_the_identity():
    attention = np.full((2, 3, 3), 1 / 3)
    assert np.array_equal(gradient_relevance([attention], [np.zeros_like(attention)], 3), np.eye(3))


# --- on a tiny Florence-2 -----------------------------------------------------------------


def encoder_record(loaded: LoadedModel, *, with_gradients: bool):
    """The eager encoder attentions of the explained answer, and dS/dA, the plain way.

    S is the sum of the answer tokens' final logits; nothing is frozen or hooked.
    """
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image()], PROMPT)
    answer = adapter.encode_answer(loaded, prepared, ANSWER)
    prefix = adapter.decoder_prefix(loaded)
    decoder_ids = torch.tensor([[*prefix, *answer]])
    with torch.set_grad_enabled(with_gradients):
        outputs = loaded.model(
            **prepared.inputs,
            decoder_input_ids=decoder_ids,
            output_attentions=True,
            use_cache=False,
        )
        attentions = [attention[0] for attention in outputs.encoder_attentions]
        if not with_gradients:
            return [a.double().numpy() for a in attentions], None
        rows = torch.arange(len(prefix) - 1, len(prefix) - 1 + len(answer))
        target = outputs.logits[0, rows, torch.tensor(answer)].sum()
        gradients = torch.autograd.grad(target, list(outputs.encoder_attentions))
    loaded.model.zero_grad(set_to_none=True)
    return (
        [a.detach().double().numpy() for a in attentions],
        [g[0].double().numpy() for g in gradients],
    )


def reference_rollout(attentions, relevance_rows):
    """Each row vector of relevance over the encoder outputs pushed back, last layer first."""
    relevance = relevance_rows
    for attention in reversed(attentions):
        mixed = 0.5 * (np.eye(attention.shape[-1]) + attention.mean(axis=0))
        relevance = relevance @ (mixed / mixed.sum(axis=1)[:, None])
    return relevance


def reference_gradient(attentions, gradients):
    length = attentions[0].shape[-1]
    factors = [
        np.eye(length) + np.clip(a * g, 0, None).mean(axis=0) for a, g in zip(attentions, gradients)
    ]
    mixed = reduce(lambda later, earlier: later @ earlier, reversed(factors)) - np.eye(length)
    sums = mixed.sum(axis=1)[:, None]
    return np.eye(length) + np.where(sums > 0, mixed / np.where(sums > 0, sums, 1), 0)


def visual_positions(loaded: LoadedModel) -> np.ndarray:
    """V: the encoder positions of the grid's image tokens."""
    prepared = loaded.adapter.prepare(loaded, [noise_image()], PROMPT)
    return loaded.adapter.locator.locate(prepared).visual_positions


def explained(loaded: LoadedModel, route: str):
    return explain(routed(loaded, route), noise_image(), PROMPT, answer=ANSWER)


def test_rollout_maps_equal_the_straightforward_reference(loaded):
    today, rolled = explained(loaded, "none"), explained(loaded, "rollout")
    attentions, _ = encoder_record(loaded, with_gradients=False)
    visual = visual_positions(loaded)
    length = attentions[0].shape[-1]
    # today's raw relevance lies on V in grid order: embed it in the encoder sequence
    tokens = np.zeros((len(today.tokens), length))
    tokens[:, visual] = today.raw_token_maps[0].reshape(len(today.tokens), -1)
    expected = reference_rollout(attentions, tokens)[:, visual]
    assert_float32_close(
        rolled.raw_token_maps[0].reshape(len(today.tokens), -1), expected, terms=length
    )
    assert rolled.tokens == today.tokens
    np.testing.assert_array_equal(rolled.token_weights, today.token_weights)


def test_gradient_maps_equal_the_straightforward_reference(loaded):
    today, weighted = explained(loaded, "none"), explained(loaded, "gradient")
    attentions, gradients = encoder_record(loaded, with_gradients=True)
    visual = visual_positions(loaded)
    relevance = reference_gradient(attentions, gradients)[np.ix_(visual, visual)]
    expected = today.raw_sequence_maps[0].reshape(-1) @ relevance
    assert_float32_close(weighted.raw_sequence_maps[0].reshape(-1), expected, terms=64)
    assert not np.allclose(relevance, np.eye(len(visual)))  # the gradients did reach it


@pytest.mark.parametrize("route", ["rollout", "gradient"])
def test_the_projection_is_recorded_and_the_model_restored(loaded, route):
    result = explained(loaded, route)
    projection = result.metadata["projection"]
    assert projection["name"] == f"encoder_self_attention_{route}"
    assert projection["kind"] == route
    assert (projection["encoder_layers"], projection["heads"], projection["units"]) == (2, 4, 64)
    assert 0 < projection["image_input_share"] <= 1 + 1e-9
    assert "docs/method.md §8.1" in projection["extension"]
    assert result.token_map_stack.shape == (len(result.tokens), 8, 8)
    assert loaded.model.config.text_config._attn_implementation == "eager"
    assert all(parameter.requires_grad for parameter in loaded.model.parameters())


def test_the_default_explains_the_encoder_outputs_as_before(loaded):
    assert Florence2Adapter().through_encoder == "none"
    assert "projection" not in explained(loaded, "none").metadata


@pytest.mark.parametrize("route", ["rollout", "gradient"])
def test_without_encoder_layers_the_maps_are_todays(route):
    model, processor = build_tiny_florence2(seed=4, hidden_size=64)
    model.model.language_model.encoder.layers = torch.nn.ModuleList()
    bare = LoadedModel(model=model, processor=processor, adapter=Florence2Adapter(), model_id="t")
    today, routed_result = explained(bare, "none"), explained(bare, route)
    np.testing.assert_array_equal(routed_result.sequence_map, today.sequence_map)
    np.testing.assert_array_equal(routed_result.token_map_stack, today.token_map_stack)
    assert routed_result.metadata["projection"]["encoder_layers"] == 0


def test_an_unknown_route_is_refused_with_the_allowed_ones():
    with pytest.raises(errors.MethodError, match="through_encoder must be one of") as caught:
        Florence2Adapter(through_encoder="attention")
    assert all(repr(route) in str(caught.value) for route in THROUGH_ENCODER)


def test_the_recording_restores_the_implementation_when_the_forward_raises(loaded):
    modules = loaded.adapter.encoder_self_attentions(loaded.model)
    config = loaded.model.config.text_config
    with (
        pytest.raises(RuntimeError, match="stop"),
        recorded_encoder_attention(modules, differentiable=False),
    ):
        assert config._attn_implementation != "eager"
        raise RuntimeError("stop")
    assert config._attn_implementation == "eager"
