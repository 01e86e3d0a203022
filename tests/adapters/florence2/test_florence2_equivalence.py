"""On tiny Florence-2: the one-pass engine equals the naive definition, and capture is transparent.

The explained attention is the decoder's cross-attention to the encoder sequence; the
reference differentiates each layer's full-vocabulary logit-lens logit with respect to
that layer's eager cross-attention probabilities, one token and one layer at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from naive_maps import assert_maps_equal_the_naive_maps
from PIL import Image

from dexar_core.engine import attention_gradients
from dexar_core.records import LoadedModel
from dexar_florence2.adapter import Florence2Adapter
from dexar_florence2.tiny import build_tiny_florence2
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error
from dexar_plugins.testing.tolerance import assert_float32_close

TOLERANCE = 1e-5

CASES = [
    # seed, attention implementation, prompt, answer
    (0, "sdpa", "<CAPTION>", "a red circle at the left"),
    (1, "eager", "<DETAILED_CAPTION>", "a blue square"),
    (2, "sdpa", "what color is the circle?", "green"),
]


def _loaded(seed: int, implementation: str) -> LoadedModel:
    model, processor = build_tiny_florence2(
        seed=seed, attn_implementation=implementation, hidden_size=64
    )
    return LoadedModel(model=model, processor=processor, adapter=Florence2Adapter(), model_id="t")


def _image(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (56, 72, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _explained(seed, implementation, prompt, answer):
    loaded = _loaded(seed, implementation)
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [_image(seed)], prompt)
    answer_ids = adapter.encode_answer(loaded, prepared, answer)
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    record = attention_gradients(loaded, forced, layout, (0, 1))
    reference = naive_attention_gradients(loaded, prepared, answer_ids, (0, 1))
    return loaded, forced, record, reference


@pytest.mark.parametrize(("seed", "implementation", "prompt", "answer"), CASES)
def test_one_pass_gradients_equal_the_naive_reference(seed, implementation, prompt, answer):
    loaded, forced, record, reference = _explained(seed, implementation, prompt, answer)
    assert (
        record.gradients.shape
        == reference.shape
        == (len(forced.answer_ids), 2, 4, forced.key_length)
    )
    assert np.abs(reference).max() > 0
    assert relative_error(record.gradients, reference) <= TOLERANCE
    # the last layer's target is the model's own logit of each answer token
    with torch.no_grad():
        logits = loaded.model(**{**forced.inputs, "logits_to_keep": 0}).logits[0]
    expected = [
        float(logits[row, token]) for row, token in zip(forced.query_rows, forced.answer_ids)
    ]
    width = loaded.model.config.text_config.hidden_size
    assert_float32_close(record.targets[-1], expected, terms=width)


def test_one_pass_maps_equal_the_naive_maps():
    _, _, record, reference = _explained(*CASES[0])
    assert_maps_equal_the_naive_maps(record, reference, TOLERANCE)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_capture_leaves_the_logits_and_the_model_unchanged(implementation):
    loaded = _loaded(3, implementation)
    model, adapter = loaded.model, loaded.adapter
    prepared = adapter.prepare(loaded, [_image(3)], "<CAPTION>")
    forced = adapter.teacher_forced(loaded, prepared, adapter.encode_answer(loaded, prepared, "a"))
    inputs = {**forced.inputs, "logits_to_keep": 0}
    with torch.no_grad():
        plain = model(**inputs).logits
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    with adapter.capture.capture(model, [0, 1], forced.query_rows) as leaves:
        captured = model(**inputs).logits
    assert_float32_close(captured, plain, terms=model.config.text_config.hidden_size)
    for leaf in leaves.leaves.values():
        assert leaf.is_leaf and leaf.requires_grad and leaf.shape == (4, 1, 73)
        assert torch.allclose(leaf.sum(-1), torch.ones(4, 1), atol=1e-5)
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()] == hooks
    assert model.config.text_config._attn_implementation == implementation
