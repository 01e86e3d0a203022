"""The one-pass engine against the definition on tiny Qwen2-VL and Qwen2.5-VL (float32):
eager attention with a given answer, the capture that leaves the logits unchanged, and the
M-RoPE positions of teacher forcing (several image sizes, two images and videos with the
model's own answer: tests/adapters/test_family_one_pass.py).
"""

from __future__ import annotations

import pytest
import torch
from noise_images import noise_image
from one_pass import one_pass_and_reference
from tiny_families import images, tiny_model, video

from dexar_plugins.testing.reference import relative_error
from dexar_plugins.testing.tolerance import assert_float32_close

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_one_pass_matches_the_definition_with_eager_attention_and_a_given_answer(version):
    loaded = tiny_model(f"qwen{version} eager")
    visuals = [*images((72, 40)), video(2)]
    record, reference = one_pass_and_reference(loaded, visuals, QUESTION, "red circle at the left")
    assert len(record.answer_ids) == 5
    assert relative_error(record.gradients, reference) <= TOLERANCE


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_capture_leaves_the_logits_unchanged(version):
    loaded = tiny_model(f"qwen{version}")
    adapter, model = loaded.adapter, loaded.model
    prepared = adapter.prepare(loaded, [*images((80, 48)), video(2)], QUESTION)
    forced = adapter.teacher_forced(loaded, prepared, [5, 6, 7])
    inputs = {**forced.inputs, "logits_to_keep": 0}
    with torch.no_grad():
        plain = model(**inputs).logits
    layers = list(range(adapter.decoder_parts(model).num_layers))
    with adapter.capture.capture(model, layers, forced.query_rows) as leaves:
        captured = model(**inputs).logits
    assert sorted(leaves.leaves) == layers
    assert_float32_close(captured, plain, terms=model.config.text_config.hidden_size)
    # every hook and the attention implementation are restored
    assert model.config.text_config._attn_implementation == "sdpa"
    with torch.no_grad():
        # bitwise: the same model, inputs and kernels as the plain forward above
        torch.testing.assert_close(model(**inputs).logits, plain, rtol=0, atol=0)


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_teacher_forcing_reproduces_the_generated_answer(version):
    """The explanation pass sees the answer with the M-RoPE positions generation used."""
    loaded = tiny_model(f"qwen{version}")
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(80, 48), noise_image(32, 32, 2)], QUESTION)
    answer = adapter.generate(loaded, prepared, 6)
    forced = adapter.teacher_forced(loaded, prepared, answer)
    with torch.no_grad():
        logits = loaded.model(**{**forced.inputs, "logits_to_keep": 0}).logits[0]
    assert logits[list(forced.query_rows)].argmax(-1).tolist() == answer
