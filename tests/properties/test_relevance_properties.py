"""Invariants of DEX-AR's relevance variants on synthetic records (docs/method.md §13)."""

from __future__ import annotations

import attrs
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dexar_core.methods.dexar import DexarMethod, relevance_quantity
from dexar_core.records import AttentionGradients
from dexar_plugins.testing.strategies import attention_rows, float32_elements, visual_layouts

GRADIENT_BOUND = 100.0
"""Largest |signed gradient| and |shift| drawn."""


@st.composite
def signed_records(draw: st.DrawFn) -> AttentionGradients:
    """A record with causal attention rows and signed gradients, zero at unseen keys."""
    layout = draw(visual_layouts())
    keys = layout.sequence_length
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    query = draw(st.integers(0, keys - 1))
    attentions = draw(attention_rows(keys, query_position=query, leading_shape=shape))
    visible = np.zeros((shape[0], keys), dtype=bool)
    visible[:, : query + 1] = True
    elements = float32_elements(-GRADIENT_BOUND, GRADIENT_BOUND)
    signed = draw(hnp.arrays(np.float32, (*shape, keys), elements=elements))
    signed = np.where(visible[:, None, None, :], signed, np.float32(0.0))
    return AttentionGradients(
        gradients=np.maximum(signed, 0.0),
        attentions=attentions,
        targets=np.zeros((shape[1], shape[0]), np.float32),
        visible=visible,
        layers=tuple(range(shape[1])),
        layout=layout,
        answer_ids=tuple(range(shape[0])),
        query_rows=(query,) * shape[0],
        raw_gradients=signed,
    )


def _shifted(record: AttentionGradients, shift: np.ndarray) -> AttentionGradients:
    """The record with ``shift[t, l, h]`` added to every visible key of each row."""
    assert record.raw_gradients is not None
    visible = record.visible[:, None, None, :]
    signed = np.where(visible, record.raw_gradients + shift[..., None], np.float32(0.0))
    signed = signed.astype(np.float32)
    return attrs.evolve(record, gradients=np.maximum(signed, 0.0), raw_gradients=signed)


@settings(max_examples=60)
@given(signed_records(), st.data())
def test_score_gradient_is_unchanged_by_a_constant_shift_of_each_row(record, data):
    """Each row sums to 1, so G + c moves sum_k A_k G_k by c as well: the softmax's
    input gradient cannot tell (while the paper's and the weighted one can)."""
    shape = record.gradients.shape[:3]
    elements = float32_elements(-GRADIENT_BOUND, GRADIENT_BOUND)
    shift = data.draw(hnp.arrays(np.float32, shape, elements=elements))
    shifted = _shifted(record, shift)
    # float32 rounding of a row's weighted sum: a few ulps of (|G| + |c|) per key
    keys = record.layout.sequence_length
    atol = 16 * np.finfo(np.float32).eps * 2 * GRADIENT_BOUND * keys
    before = relevance_quantity(record, "score_gradient")
    after = relevance_quantity(shifted, "score_gradient")
    np.testing.assert_allclose(after, before, rtol=0, atol=atol)
    method = DexarMethod(relevance="score_gradient")
    result, result_shifted = method.explain(record), method.explain(shifted)
    # head weights and delta are differences of maxima of the quantity; the map sums
    # H x L weighted copies of it
    np.testing.assert_allclose(result_shifted.head_weights, result.head_weights, atol=2 * atol)
    np.testing.assert_allclose(result_shifted.token_weights, result.token_weights, atol=2 * atol)


@given(signed_records(), st.sampled_from(["score_gradient", "weighted_gradient"]))
def test_a_key_the_row_did_not_attend_to_gets_no_relevance(record, relevance):
    quantity = relevance_quantity(record, relevance)
    assert (quantity >= 0).all()
    assert (quantity[record.attentions == 0] == 0).all()
