"""The one-pass engine equals the straightforward per-token, per-layer definition."""

from __future__ import annotations

import numpy as np
import pytest
from llava_fixtures import noise_image, tiny_llava

from dexar_core.engine import attention_gradients
from dexar_core.methods.dexar import DexarMethod
from dexar_core.records import AttentionGradients
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error

TOLERANCE = 1e-5

CASES = [
    # seed, attention implementation, kv heads, prompt, answer (None = free-run), tokens
    (0, "sdpa", None, "what color is the circle?", None, 4),
    (1, "eager", None, "describe the image", None, 6),
    (2, "sdpa", 2, "where is the red shape?", None, 3),
    (3, "sdpa", None, "what shape is at the top?", "a red circle at the left", None),
    (4, "eager", 2, "what", "blue", None),
]


def _explained(seed, implementation, kv_heads, prompt, answer, tokens):
    loaded = tiny_llava(seed=seed, attn_implementation=implementation, kv_heads=kv_heads)
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(seed)], prompt)
    if answer is None:
        answer_ids = adapter.generate(loaded, prepared, tokens)
    else:
        answer_ids = adapter.encode_answer(loaded, prepared, answer)
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    layers = (0, 1)
    record = attention_gradients(loaded, forced, layout, layers)
    reference = naive_attention_gradients(loaded, prepared, answer_ids, layers)
    return record, reference


@pytest.mark.parametrize(
    ("seed", "implementation", "kv_heads", "prompt", "answer", "tokens"), CASES
)
def test_one_pass_gradients_equal_the_naive_reference(
    seed, implementation, kv_heads, prompt, answer, tokens
):
    record, reference = _explained(seed, implementation, kv_heads, prompt, answer, tokens)
    assert record.gradients.shape == reference.shape
    assert np.abs(reference).max() > 0
    assert relative_error(record.gradients, reference) <= TOLERANCE


@pytest.mark.parametrize("case", [CASES[0], CASES[3]])
def test_one_pass_maps_equal_the_naive_maps(case):
    record, reference = _explained(*case)
    naive_record = AttentionGradients(
        gradients=reference,
        attentions=record.attentions,
        targets=record.targets,
        visible=record.visible,
        layers=record.layers,
        layout=record.layout,
        answer_ids=record.answer_ids,
        query_rows=record.query_rows,
    )
    method = DexarMethod()
    fast, slow = method.explain(record), method.explain(naive_record)
    assert relative_error(fast.token_relevance, slow.token_relevance) <= TOLERANCE
    assert relative_error(fast.sequence_relevance, slow.sequence_relevance) <= TOLERANCE
    assert relative_error(fast.token_weights, slow.token_weights) <= TOLERANCE
    assert relative_error(fast.head_weights, slow.head_weights) <= TOLERANCE


def test_targets_are_the_logit_lens_logits_of_the_last_layer():
    """s^{L,t} from the hook and one final norm equals the model's own logit."""
    import torch

    loaded = tiny_llava(seed=5)
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(5)], "what color is the circle?")
    answer_ids = adapter.encode_answer(loaded, prepared, "red circle")
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    record = attention_gradients(loaded, forced, layout, (0, 1))
    inputs = {**forced.inputs, "logits_to_keep": 0}
    with torch.no_grad():
        logits = loaded.model(**inputs).logits[0]
    expected = [float(logits[row, token]) for row, token in zip(forced.query_rows, answer_ids)]
    np.testing.assert_allclose(record.targets[-1], expected, rtol=1e-5, atol=1e-5)
