"""On tiny BLIP-2 (OPT and Flan-T5): the one-pass engine equals the naive definition.

OPT: the language model's self-attention over queries + prompt + answer. T5: the
decoder's cross-attention to the encoder's queries + prompt (its eager attention returns
``(output, position_bias, probabilities)``, which ``DecoderParts.attention_probabilities``
tells the reference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dexar_blip2.adapter import Blip2Adapter
from dexar_blip2.tiny import build_tiny_blip2
from dexar_core.engine import attention_gradients
from dexar_core.records import LoadedModel
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error
from dexar_plugins.testing.tolerance import assert_float32_close

TOLERANCE = 1e-5

CASES = [
    # seed, language model, attention implementation, prompt, answer (None = free-run)
    (0, "opt", "sdpa", "what color is the circle?", "a red circle"),
    (1, "opt", "eager", "describe the image", None),
    (2, "t5", "sdpa", "where is the red shape?", "top left"),
    (3, "t5", "eager", "what shape is at the top?", "a blue square"),
]


def _loaded(seed: int, language_model: str, implementation: str) -> LoadedModel:
    model, processor = build_tiny_blip2(
        seed=seed,
        language_model=language_model,
        attn_implementation=implementation,
        hidden_size=64,
        num_query_tokens=16,
    )
    return LoadedModel(model=model, processor=processor, adapter=Blip2Adapter(), model_id="t")


def _image(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize(("seed", "language_model", "implementation", "prompt", "answer"), CASES)
def test_one_pass_gradients_equal_the_naive_reference(
    seed, language_model, implementation, prompt, answer
):
    loaded = _loaded(seed, language_model, implementation)
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [_image(seed)], prompt)
    if answer is None:
        answer_ids = adapter.generate(loaded, prepared, 3)
        assert answer_ids, "the tiny model's free-run answer should not be empty"
    else:
        answer_ids = adapter.encode_answer(loaded, prepared, answer)
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layout = adapter.locator.locate(prepared).with_length(forced.key_length)
    assert layout.visual_mask.sum() == 16
    record = attention_gradients(loaded, forced, layout, (0, 1))
    reference = naive_attention_gradients(loaded, prepared, answer_ids, (0, 1))
    assert record.gradients.shape == reference.shape
    assert np.abs(reference).max() > 0
    assert relative_error(record.gradients, reference) <= TOLERANCE
    inputs = dict(forced.inputs)
    inputs.pop("logits_to_keep", None)
    with torch.no_grad():
        logits = loaded.model(**inputs).logits[0]
    expected = [float(logits[row, token]) for row, token in zip(forced.query_rows, answer_ids)]
    width = loaded.model.config.text_config.hidden_size
    assert_float32_close(record.targets[-1], expected, terms=width)


@pytest.mark.parametrize("language_model", ["opt", "t5"])
def test_capture_leaves_the_logits_and_the_model_unchanged(language_model):
    loaded = _loaded(4, language_model, "sdpa")
    model, adapter = loaded.model, loaded.adapter
    prepared = adapter.prepare(loaded, [_image(4)], "what color is the circle?")
    forced = adapter.teacher_forced(
        loaded, prepared, adapter.encode_answer(loaded, prepared, "red")
    )
    inputs = dict(forced.inputs)
    inputs.pop("logits_to_keep", None)
    with torch.no_grad():
        plain = model(**inputs).logits
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    implementations = (
        model.config.text_config._attn_implementation,
        model.config.qformer_config._attn_implementation,
    )
    with adapter.capture.capture(model, [0, 1], forced.query_rows) as leaves:
        captured = model(**inputs).logits
    assert_float32_close(captured, plain, terms=model.config.text_config.hidden_size)
    assert set(leaves.leaves) == {0, 1}
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()] == hooks
    assert (
        model.config.text_config._attn_implementation,
        model.config.qformer_config._attn_implementation,
    ) == implementations
