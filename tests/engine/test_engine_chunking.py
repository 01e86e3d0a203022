"""Explaining the answer in chunks of tokens gives the explanation of the whole answer.

``chunk_size`` bounds the memory of long answers by running several passes over fewer
answer rows (docs/performance.md). Each pass detaches the layer inputs and keeps only
its own rows as leaves, so the gradient on a row cannot depend on which other rows
share its pass: chunked and unchunked results must agree, maps included.
"""

from __future__ import annotations

import numpy as np
import pytest
from llava_fixtures import noise_image, tiny_llava

from dexar_core.api import explain
from dexar_core.engine import attention_gradients
from dexar_core.methods.dexar import DexarMethod
from dexar_plugins.testing.reference import relative_error

# Float32 passes over different sets of leaf rows differ in the last bits only; measured
# as in the engine's equivalence test: max |difference| / max |value|.
TOLERANCE = 1e-5
PROMPT = "what color is the circle?"
ANSWER = "a red circle at the left of a blue square"  # 10 tokens


def _record(loaded, chunk_size):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(3)], PROMPT)
    forced = adapter.teacher_forced(
        loaded, prepared, adapter.encode_answer(loaded, prepared, ANSWER)
    )
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    return attention_gradients(loaded, forced, layout, (0, 1), chunk_size=chunk_size)


@pytest.mark.parametrize(
    ("attn_implementation", "kv_heads"), [("sdpa", None), ("eager", None), ("sdpa", 2)]
)
def test_chunked_gradients_equal_the_one_pass_gradients(attn_implementation, kv_heads):
    loaded = tiny_llava(seed=5, attn_implementation=attn_implementation, kv_heads=kv_heads)
    whole = _record(loaded, None)
    assert whole.gradients.shape[0] == 10
    assert np.abs(whole.gradients).max() > 0
    for chunk_size in (1, 3, 64):  # one token per pass, uneven chunks, more than T
        chunked = _record(loaded, chunk_size)
        assert chunked.gradients.shape == whole.gradients.shape
        assert relative_error(chunked.gradients, whole.gradients) <= TOLERANCE
        assert relative_error(chunked.attentions, whole.attentions) <= TOLERANCE
        assert relative_error(chunked.targets, whole.targets) <= TOLERANCE
        np.testing.assert_array_equal(chunked.visible, whole.visible)
        assert chunked.query_rows == whole.query_rows
        assert chunked.answer_ids == whole.answer_ids


def test_chunked_method_results_equal_the_one_pass_results():
    loaded = tiny_llava(seed=6)
    whole = DexarMethod().explain(_record(loaded, None))
    chunked = DexarMethod().explain(_record(loaded, 3))
    for name in ("token_relevance", "sequence_relevance", "token_weights", "head_weights"):
        assert relative_error(getattr(chunked, name), getattr(whole, name)) <= TOLERANCE, name
    assert chunked.sequence_fallback == whole.sequence_fallback


@pytest.mark.parametrize("answer", [ANSWER, None])
def test_chunked_explanations_give_the_same_maps(answer):
    loaded = tiny_llava(seed=7)
    image = noise_image(4)
    kwargs = {"answer": answer, "max_new_tokens": 6}
    whole = explain(loaded, image, PROMPT, **kwargs)
    chunked = explain(loaded, image, PROMPT, chunk_size=2, **kwargs)
    assert chunked.token_ids == whole.token_ids
    # The maps are normalised to [0, 1], so atol 1e-5 is the engine's bound relative to the max.
    np.testing.assert_allclose(chunked.token_map_stack, whole.token_map_stack, atol=1e-5)
    np.testing.assert_allclose(chunked.sequence_map, whole.sequence_map, atol=1e-5)
    assert relative_error(chunked.token_weights, whole.token_weights) <= TOLERANCE


@pytest.mark.parametrize(("attn_implementation", "chunk_size"), [("sdpa", None), ("eager", 4)])
def test_each_layers_leaf_is_freed_once_written(monkeypatch, attn_implementation, chunk_size):
    """The outputs fill as the leaves empty: nothing (graph, capture) keeps a leaf alive
    after fill() wrote it, so leaves, gradients and outputs are never all held at once."""
    import gc
    import weakref

    from dexar_core.engine.answer_arrays import AnswerArrays

    alive_after_fill: list[int] = []
    fill = AnswerArrays.fill

    def watched(self, tokens, leaves, grads, visible, targets):
        references = [weakref.ref(leaf) for leaf in leaves]
        fill(self, tokens, leaves, grads, visible, targets)
        gc.collect()
        alive_after_fill.append(sum(reference() is not None for reference in references))

    monkeypatch.setattr(AnswerArrays, "fill", watched)
    loaded = tiny_llava(seed=7, attn_implementation=attn_implementation)
    record = _record(loaded, chunk_size)
    assert np.abs(record.gradients).max() > 0
    assert alive_after_fill and alive_after_fill == [0] * len(alive_after_fill)
