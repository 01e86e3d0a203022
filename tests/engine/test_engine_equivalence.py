"""The one-pass engine equals the straightforward per-token, per-layer definition."""

from __future__ import annotations

import numpy as np
import pytest
from llava_fixtures import noise_image, tiny_llava
from naive_maps import assert_maps_equal_the_naive_maps

from dexar_core.engine import attention_gradients
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error
from dexar_plugins.testing.tolerance import assert_float32_close

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
    assert_maps_equal_the_naive_maps(record, reference, TOLERANCE)


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
    width = loaded.model.config.text_config.hidden_size
    assert_float32_close(record.targets[-1], expected, terms=width)
