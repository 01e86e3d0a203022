"""DEX-AR's relevance variants (docs/method.md §13) against hand values and the reference.

The reference (``dexar_plugins.testing.reference.naive_attention_gradients``) differentiates each
token's prefix once per layer: with respect to the probabilities (and multiplies by
them) for ``weighted_gradient``, with respect to the softmax's input for
``score_gradient``. The engine gets both from its one pass. A variant's head weights,
maps and delta are the paper's formulas on the variant's quantity, so DEX-AR with the
variant on the engine's record equals the paper's DEX-AR on the reference quantity.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from llava_fixtures import noise_image, tiny_llava
from PIL import Image
from toy_record import RAW, toy_record

from dexar_core.engine import attention_gradients
from dexar_core.errors import MethodError
from dexar_core.methods.dexar import RELEVANCES, DexarMethod, relevance_quantity
from dexar_core.records import LoadedModel
from dexar_core.validation import check_method_options
from dexar_plugins.testing.reference import naive_attention_gradients
from dexar_plugins.testing.tolerance import assert_float32_close
from dexar_qwen_vl.adapter import QwenVLAdapter
from dexar_qwen_vl.tiny import build_tiny_qwen_vl

COMPARED = ("token_relevance", "sequence_relevance", "token_weights", "head_weights")


def test_the_default_is_the_papers_gradient_and_asks_nothing_more() -> None:
    method = DexarMethod()
    assert method.relevance == "attention_gradient"
    assert method.needs == frozenset()
    record = toy_record()
    paper = relevance_quantity(record, "attention_gradient")
    np.testing.assert_array_equal(paper, record.gradients)


def test_only_the_score_gradient_asks_for_the_signed_gradients() -> None:
    assert DexarMethod(relevance="score_gradient").needs == frozenset({"raw_gradients"})
    assert DexarMethod(relevance="weighted_gradient").needs == frozenset()


def test_weighted_gradient_is_attention_times_the_rectified_gradient() -> None:
    record = toy_record()
    weighted = relevance_quantity(record, "weighted_gradient")
    # layer 1 head 0: A = [0, 1, 0, 0], G = [0, 2, 0, 1]
    np.testing.assert_array_equal(weighted[0, 1, 0], [0, 2, 0, 0])
    np.testing.assert_allclose(weighted, record.attentions * np.maximum(RAW, 0)[None])


def test_score_gradient_by_hand() -> None:
    # layer 0 head 0: A = 1/4 each, g = [1, -2, 3, 0]; sum_k A_k g_k = 0.5, so
    # A * (g - 0.5) = [0.125, -0.625, 0.625, -0.125]
    score = relevance_quantity(toy_record(), "score_gradient")
    np.testing.assert_allclose(score[0, 0, 0], [0.125, 0, 0.625, 0])
    # layer 1 head 1: A = [0, 0, 0, 1], g = [1, -1, 1, 0]: the one attended key's g is the
    # mean, so every entry is 0 (a one-hot row cannot move)
    np.testing.assert_array_equal(score[0, 1, 1], [0, 0, 0, 0])


def test_score_gradient_ignores_keys_the_row_cannot_see() -> None:
    visible = np.array([[True, True, True, False]])
    attentions = np.full((1, 2, 2, 4), 1 / 3, np.float32)
    attentions[..., 3] = 0.0
    record = toy_record(attentions=attentions, visible=visible)
    score = relevance_quantity(record, "score_gradient")
    # layer 0 head 0: g = [1, -2, 3, (0)], mean over the 3 visible keys 2/3
    np.testing.assert_allclose(score[0, 0, 0], [1 / 9, 0, 7 / 9, 0], rtol=1e-6)


@pytest.mark.parametrize("relevance", ["score_gradient", "weighted_gradient"])
def test_the_variant_feeds_head_weights_maps_and_delta(relevance: str) -> None:
    record = toy_record()
    quantity = relevance_quantity(record, relevance)
    variant = DexarMethod(relevance=relevance).explain(record)
    paper_on_quantity = DexarMethod().explain(attrs.evolve(record, gradients=quantity))
    for name in COMPARED:
        np.testing.assert_array_equal(getattr(variant, name), getattr(paper_on_quantity, name))


def test_visual_share_reads_the_variant() -> None:
    record = toy_record()
    quantity = relevance_quantity(record, "weighted_gradient")
    share = DexarMethod(relevance="weighted_gradient", token_score="visual_share").explain(record)
    on_visual, on_text = quantity[..., [1, 2]].sum(), quantity[..., [0, 3]].sum()
    assert share.token_weights[0] == pytest.approx(on_visual / (on_visual + on_text))


def test_an_unknown_relevance_is_refused_naming_the_choices() -> None:
    with pytest.raises(MethodError, match="relevance must be one of") as caught:
        check_method_options("dexar", {"relevance": "gradient"})
    assert all(choice in str(caught.value) for choice in RELEVANCES)
    with pytest.raises(MethodError, match="must be a word"):
        check_method_options("dexar", {"relevance": 3})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_score": "attention_weighted"}, "already does"),
        ({"official_compat": True}, "released code"),
    ],
)
def test_combinations_that_would_weigh_twice_or_leave_the_released_code_are_refused(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(MethodError, match=message):
        DexarMethod(relevance="score_gradient", **options)


def test_score_gradient_without_signed_gradients_says_what_to_do() -> None:
    with pytest.raises(MethodError, match="raw_gradients"):
        DexarMethod(relevance="score_gradient").explain(toy_record(raw_gradients=None))


@pytest.mark.parametrize("relevance", ["score_gradient", "weighted_gradient"])
def test_rows_averaged_over_several_queries_are_refused(relevance: str) -> None:
    with pytest.raises(MethodError, match="product of means"):
        DexarMethod(relevance=relevance).explain(toy_record(averaged_rows=5))


def _compare_with_the_reference(
    loaded: LoadedModel, images: list[Image.Image], answer: str, relevance: str, width: int
) -> None:
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, images, "what color is the circle?")
    answer_ids = adapter.encode_answer(loaded, prepared, answer)
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    layers = tuple(range(adapter.decoder_parts(loaded.model).num_layers))
    method = DexarMethod(relevance=relevance)
    record = attention_gradients(loaded, forced, layout, layers, needs=method.needs)
    reference = naive_attention_gradients(loaded, prepared, answer_ids, layers, relevance)
    quantity = relevance_quantity(record, relevance)
    assert quantity[..., layout.visual_mask].max() > 0, "vacuous: no relevance on the image"
    assert_float32_close(quantity, reference, terms=width, err_msg=relevance)
    variant = method.explain(record)
    on_reference = DexarMethod().explain(attrs.evolve(record, gradients=reference))
    for name in COMPARED:
        expected = getattr(on_reference, name)
        assert_float32_close(getattr(variant, name), expected, terms=width, err_msg=name)


@pytest.mark.parametrize("relevance", RELEVANCES)
def test_llava_variants_equal_the_reference(relevance: str) -> None:
    loaded = tiny_llava(seed=3, kv_heads=2)
    width = loaded.model.config.text_config.hidden_size
    _compare_with_the_reference(loaded, [noise_image(3)], "a red circle", relevance, width)


@pytest.mark.parametrize("relevance", ["score_gradient", "weighted_gradient"])
def test_qwen2_vl_variants_equal_the_reference(relevance: str) -> None:
    torch.set_num_threads(2)
    model, processor = build_tiny_qwen_vl(version="2", seed=1)
    loaded = LoadedModel(model=model, processor=processor, adapter=QwenVLAdapter(), model_id="tiny")
    width = model.config.text_config.hidden_size
    image = noise_image(4, size=(80, 48))
    _compare_with_the_reference(loaded, [image], "red circle at the left", relevance, width)
