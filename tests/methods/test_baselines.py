"""Each baseline of docs/method.md §10 against hand-computed values on a 2-layer toy record.

Keys: 0 = BOS (template text), 1 and 2 = visual tokens (one 1x2 grid), 3 = the query
row q_0 (prompt text). One answer token, two layers, two heads.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
from toy_record import (
    FULL,
    LAYOUT,
    RAW,
    toy_record,
)

from dexar_core.errors import MethodError
from dexar_core.methods.attention import AttentionMethod
from dexar_core.methods.attn_grad import AttnGradMethod
from dexar_core.methods.gae import GaeMethod
from dexar_core.methods.legrad import LeGradMethod
from dexar_core.methods.rollout import RolloutMethod
from dexar_core.methods.tam import TamMethod, estimated_causal_inference, rank_gaussian_filter
from dexar_core.records import AttentionGradients


def relevance(method: object, record: AttentionGradients | None = None) -> np.ndarray:
    result = method.explain(toy_record() if record is None else record)  # type: ignore[attr-defined]
    np.testing.assert_allclose(result.sequence_relevance, result.token_relevance.sum(axis=0))
    np.testing.assert_array_equal(result.token_weights, np.ones(1))
    return result.token_relevance[0]


def test_attention_is_the_head_mean_of_the_last_layer_row():
    # the engine captures only the layers the method asks for: the last one by default
    assert AttentionMethod().layers(2) == (1,)
    last = toy_record(attentions=FULL[1:, :, 3, :][None], gradients=np.maximum(RAW, 0)[None, 1:])
    last = attrs.evolve(last, layers=(1,), targets=np.zeros((1, 1), np.float32))
    # layer 1, row 3: heads [0, 1, 0, 0] and [0, 0, 0, 1] -> mean over V = [0.5, 0]
    np.testing.assert_allclose(relevance(AttentionMethod(), last), [0.5, 0.0])


def test_attention_option_means_over_every_layer():
    # layer 0 row 3 = 0.25 everywhere: ([0.25, 0.25] + [0.5, 0]) / 2
    np.testing.assert_allclose(relevance(AttentionMethod(layers="all")), [0.375, 0.125])


def test_legrad_sums_over_layers_the_head_mean_of_relu_gradients():
    # layer 0: ([0, 3] + [1, 0]) / 2 = [0.5, 1.5]; layer 1: ([2, 0] + [0, 1]) / 2 = [1, 0.5]
    np.testing.assert_allclose(relevance(LeGradMethod()), [1.5, 2.0])


def test_attn_grad_applies_relu_after_the_sum_over_heads():
    # layer 0: 0.25*(-2) + 0.25*1 = -0.25 -> 0 ; 0.25*3 + 0.25*(-1) = 0.5
    # layer 1: 1*2 + 0*(-1) = 2 ; 0*(-4) + 0*1 = 0
    np.testing.assert_allclose(relevance(AttnGradMethod()), [2.0, 0.5])


def test_attn_grad_without_signed_gradients_is_a_method_error():
    with pytest.raises(MethodError, match="raw_gradients"):
        AttnGradMethod().explain(toy_record(raw_gradients=None))


def test_rollout_multiplies_row_normalised_attention_plus_identity():
    # A0 = (M0 + I)/2, A1 = (mean heads + I)/2; row 3 of A1 @ A0 = 0.25 r1 + 0.75 r3 of A0
    # = 0.25 [0.25, 0.75, 0, 0] + 0.75 [0.125, 0.125, 0.125, 0.625]
    np.testing.assert_allclose(relevance(RolloutMethod()), [0.28125, 0.09375])


def test_gae_propagates_positive_gradient_weighted_attention():
    # Abar0 = 0.5 M0 (head 1's gradient is negative), Abar1 = layer 1 head 0;
    # row 3 of (I + Abar1)(I + Abar0) = [0, 1, 0, 1] (I + 0.5 M0) = [0.375, 1.375, 0.125, 1.125]
    np.testing.assert_allclose(relevance(GaeMethod()), [1.375, 0.125])


@pytest.mark.parametrize("method", [RolloutMethod(), GaeMethod()])
def test_full_matrix_methods_without_full_attention_are_a_method_error(method):
    with pytest.raises(MethodError, match="full_attention"):
        method.explain(toy_record(full_attentions=None))


def test_tam_subtracts_the_least_squares_scaled_interference():
    # activation [4, 2]; context = position 3 (word 30), weight 1, its map [2, 0];
    # s = <[4,2],[2,0]> / <[2,0],[2,0]> = 2 -> ReLU([4,2] - 2 [2,0]) = [0, 2];
    # joint min-max with the text score 1: [0, 2] / 2
    np.testing.assert_allclose(relevance(TamMethod(kernel_size=1)), [0.0, 1.0], atol=1e-6)


def test_tam_without_causal_inference_normalises_with_the_text_scores():
    # [4, 2] with the text score 1: ([4, 2] - 1) / (4 - 1)
    method = TamMethod(kernel_size=1, causal_inference=False)
    np.testing.assert_allclose(relevance(method), [1.0, 1 / 3], atol=1e-6)


def test_tam_ignores_context_tokens_equal_to_the_explained_one():
    # the prompt word is the answer token itself: no context, no correction
    record = toy_record(sequence_ids=np.array([10, 20, 20, 40]))
    # and no text score joins the normalisation: [4, 2] min-max alone
    np.testing.assert_allclose(relevance(TamMethod(kernel_size=1), record), [1.0, 0.0], atol=1e-6)


def test_estimated_causal_inference_with_no_interference_keeps_the_activation():
    activation = np.array([1.0, 2.0])
    out = estimated_causal_inference(activation, np.zeros((1, 2)), np.array([3.0]))
    np.testing.assert_array_equal(out, activation)


def test_rank_gaussian_filter_damps_an_isolated_peak_by_hand():
    peak = np.zeros((3, 3))
    peak[1, 1] = 9.0
    # centre window: eight 0 and one 9 (rank offset +4); mean 1, std sqrt(8) -> sigma sqrt(8)
    weights = [math.exp(-(o**2) / 16) for o in range(-4, 5)]
    expected = 9 * weights[-1] / sum(weights)
    assert rank_gaussian_filter(peak)[1, 1] == pytest.approx(expected, rel=1e-6)


def test_rank_gaussian_filter_keeps_flat_maps_and_zeros():
    np.testing.assert_allclose(rank_gaussian_filter(np.full((4, 5), 0.7)), 0.7, rtol=1e-6)
    np.testing.assert_array_equal(rank_gaussian_filter(np.zeros((2, 2))), 0)
    assert rank_gaussian_filter(np.array([[0.0, 1.0, 0.0]])).shape == (1, 3)


def test_tam_rejects_an_even_kernel():
    with pytest.raises(MethodError, match="odd"):
        TamMethod(kernel_size=2)


@pytest.mark.parametrize(
    "method",
    [
        AttentionMethod(),
        AttnGradMethod(),
        LeGradMethod(),
        RolloutMethod(),
        GaeMethod(),
        TamMethod(),
    ],
)
def test_maps_are_finite_and_in_unit_range(method):
    result = method.explain(toy_record())
    token_maps, sequence_maps = result.maps(LAYOUT)
    assert token_maps[0].shape == (1, 1, 2) and sequence_maps[0].shape == (1, 2)
    for values in (token_maps[0], sequence_maps[0]):
        assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
