"""The one-pass engine against the definition on tiny Qwen2-VL and Qwen2.5-VL (float32).

Several image sizes and aspect ratios, two images in one prompt, and videos: the
gradients of the one forward + one backward pass equal the straightforward reference
(one forward per token, one ``autograd.grad`` per token and layer) to 1e-5 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core.engine import attention_gradients
from dexar_core.images import Video
from dexar_core.records import LoadedModel
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error
from dexar_plugins.testing.tolerance import assert_float32_close
from dexar_qwen_vl.adapter import QwenVLAdapter
from dexar_qwen_vl.tiny import build_tiny_qwen_vl

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _video(frames: int, height: int = 32, width: int = 48) -> Video:
    return Video(frames=[_image(height, width, 10 + seed) for seed in range(frames)])


_MODELS: dict[tuple[str, str], LoadedModel] = {}


def _loaded(version: str, attn_implementation: str = "sdpa") -> LoadedModel:
    key = (version, attn_implementation)
    if key not in _MODELS:
        torch.set_num_threads(2)
        model, processor = build_tiny_qwen_vl(
            version=version, seed=1, attn_implementation=attn_implementation
        )
        _MODELS[key] = LoadedModel(
            model=model, processor=processor, adapter=QwenVLAdapter(), model_id="tiny"
        )
    return _MODELS[key]


CASES = {
    "qwen2 square": ("2", lambda: [_image(64, 64)]),
    "qwen2 wide": ("2", lambda: [_image(48, 80)]),
    "qwen2 tall, resized": ("2", lambda: [_image(150, 50)]),
    "qwen2 two images": ("2", lambda: [_image(48, 80), _image(64, 32, 1)]),
    "qwen2 video": ("2", lambda: [_video(4)]),
    "qwen2.5 wide": ("2.5", lambda: [_image(48, 80)]),
    "qwen2.5 two images": ("2.5", lambda: [_image(64, 64), _image(100, 40, 1)]),
    "qwen2.5 image and odd video": ("2.5", lambda: [_image(32, 48), _video(3)]),
}


def _compare(loaded: LoadedModel, visuals, answer_ids=None, max_new_tokens: int = 3):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, visuals, QUESTION)
    layout = adapter.locator.locate(prepared)
    if answer_ids is None:
        answer_ids = adapter.generate(loaded, prepared, max_new_tokens)
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layers = list(range(adapter.decoder_parts(loaded.model).num_layers))
    record = attention_gradients(loaded, forced, layout.with_length(forced.key_length), layers)
    reference = naive_attention_gradients(loaded, prepared, answer_ids, layers)
    return record, reference


@pytest.mark.parametrize("case", list(CASES))
def test_one_pass_matches_the_definition(case):
    version, visuals = CASES[case]
    record, reference = _compare(_loaded(version), visuals())
    assert record.gradients.shape == reference.shape
    on_visual = record.gradients[..., record.layout.visual_mask]
    assert on_visual.max() > 0, "vacuous comparison: no gradient reaches the visual tokens"
    assert relative_error(record.gradients, reference) <= TOLERANCE


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_one_pass_matches_the_definition_with_eager_attention_and_a_given_answer(version):
    loaded = _loaded(version, "eager")
    answer = loaded.adapter.encode_answer(loaded, None, "red circle at the left")
    record, reference = _compare(loaded, [_image(40, 72), _video(2)], answer_ids=answer)
    assert len(record.answer_ids) == 5
    assert relative_error(record.gradients, reference) <= TOLERANCE


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_capture_leaves_the_logits_unchanged(version):
    loaded = _loaded(version)
    adapter, model = loaded.adapter, loaded.model
    prepared = adapter.prepare(loaded, [_image(48, 80), _video(2)], QUESTION)
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
    loaded = _loaded(version)
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [_image(48, 80), _image(32, 32, 2)], QUESTION)
    answer = adapter.generate(loaded, prepared, 6)
    forced = adapter.teacher_forced(loaded, prepared, answer)
    with torch.no_grad():
        logits = loaded.model(**{**forced.inputs, "logits_to_keep": 0}).logits[0]
    assert logits[list(forced.query_rows)].argmax(-1).tolist() == answer
