"""Heatmap invariants of DEX-AR on synthetic gradient tensors (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_records import record_of

from dexar_core.methods.dexar import DexarMethod
from dexar_core.records import AttentionGradients
from dexar_plugins.testing.strategies import gradient_tensors, visual_layouts


@st.composite
def records(draw: st.DrawFn) -> AttentionGradients:
    layout = draw(visual_layouts())
    return record_of(layout, draw(gradient_tensors(layout)))


methods = st.builds(
    DexarMethod,
    head_agg=st.sampled_from(["max", "topk_mean", "mean"]),
    text_set=st.sampled_from(["all_non_visual", "prompt_only"]),
    normalize_tokens=st.booleans(),
)


@given(records(), methods)
def test_maps_are_finite_in_unit_range_and_shaped_like_the_grids(record, method):
    result = method.explain(record)
    token_maps, sequence_maps = result.maps(record.layout)
    tokens = record.gradients.shape[0]
    for grid, stack, sequence in zip(record.layout.grids, token_maps, sequence_maps):
        assert stack.shape == (tokens, *grid.shape)
        assert sequence.shape == grid.shape
        for values in (stack, sequence):
            assert np.isfinite(values).all()
            assert values.min() >= 0.0 and values.max() <= 1.0


@given(records(), methods)
def test_head_and_token_weights_are_non_negative(record, method):
    result = method.explain(record)
    assert (result.head_weights >= 0).all()
    assert (result.token_weights >= 0).all()


@given(records())
def test_a_head_more_sensitive_to_text_than_to_image_gets_weight_zero(record):
    layout = record.layout
    gradients = record.gradients
    visual_max = gradients[..., layout.visual_mask].max(axis=-1)
    text = layout.text_set("all_non_visual")
    text_max = gradients[..., text].max(axis=-1, initial=0.0)
    result = DexarMethod().explain(record)
    assert (result.head_weights[text_max > visual_max] == 0).all()
    np.testing.assert_allclose(
        result.head_weights, np.maximum(visual_max - text_max, 0), rtol=1e-6, atol=1e-6
    )


@settings(max_examples=50)
@given(records(), st.sampled_from([0.5, 3.0, 1024.0]))
def test_scaling_every_gradient_leaves_the_normalised_maps_unchanged(record, scale):
    scaled = record_of(record.layout, record.gradients * np.float32(scale))
    method = DexarMethod()
    maps, sequence = method.explain(record).maps(record.layout)
    maps_scaled, sequence_scaled = method.explain(scaled).maps(record.layout)
    for a, b in zip(maps + sequence, maps_scaled + sequence_scaled):
        np.testing.assert_allclose(a, b, atol=2e-4)


@given(visual_layouts(), st.integers(1, 3), st.integers(1, 2), st.integers(1, 3))
def test_constant_gradients_give_zero_maps_and_the_flagged_fallback(layout, tokens, layers, heads):
    gradients = np.full((tokens, layers, heads, layout.sequence_length), 0.25, np.float32)
    result = DexarMethod().explain(record_of(layout, gradients))
    token_maps, sequence_maps = result.maps(layout)
    for values in token_maps + sequence_maps:
        assert np.isfinite(values).all()
        assert (values == 0).all()
    assert result.sequence_fallback
    assert (result.token_weights == 0).all()


@given(records())
def test_sequence_map_is_the_normalised_delta_weighted_sum_of_token_relevance(record):
    result = DexarMethod().explain(record)
    weights = (
        np.ones_like(result.token_weights) if result.sequence_fallback else result.token_weights
    )
    expected = (weights[:, None] * result.token_relevance).sum(axis=0)
    _, sequence_maps = result.maps(record.layout)
    from dexar_core.heatmap import minmax, to_grid

    for grid, sequence in zip(record.layout.grids, sequence_maps):
        reference = minmax(to_grid(expected, grid, record.layout.visual_positions))
        np.testing.assert_allclose(sequence, reference, atol=1e-5)


@given(records(), st.randoms(use_true_random=False))
def test_permuting_answer_tokens_permutes_token_maps_and_keeps_the_sequence_map(record, rng):
    order = list(range(record.gradients.shape[0]))
    rng.shuffle(order)
    permuted = record_of(record.layout, record.gradients[order])
    method = DexarMethod()
    maps, sequence = method.explain(record).maps(record.layout)
    maps_permuted, sequence_permuted = method.explain(permuted).maps(record.layout)
    for stack, stack_permuted in zip(maps, maps_permuted):
        np.testing.assert_array_equal(stack[order], stack_permuted)
    for a, b in zip(sequence, sequence_permuted):
        np.testing.assert_allclose(a, b, atol=1e-5)
