"""Capture is transparent and leaves nothing behind, also when the forward raises."""

from __future__ import annotations

import pytest
import torch
from llava_fixtures import noise_image, tiny_llava

from dexar_core.errors import MethodError
from dexar_plugins.testing.tolerance import assert_float32_close


def _state(model):
    return (
        [(m._forward_hooks.copy(), m._forward_pre_hooks.copy()) for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        model.config.text_config._attn_implementation,
        model.config.vision_config._attn_implementation,
    )


def _forced(loaded, answer="red circle"):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(0)], "what color is the circle?")
    ids = adapter.encode_answer(loaded, prepared, answer)
    return adapter.teacher_forced(loaded, prepared, ids)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_logits_are_unchanged_with_capture_active(implementation):
    loaded = tiny_llava(seed=3, attn_implementation=implementation)
    forced = _forced(loaded)
    inputs = {**forced.inputs, "logits_to_keep": 0}
    with torch.no_grad():
        plain = loaded.model(**inputs).logits
    with loaded.adapter.capture.capture(loaded.model, [0, 1], forced.query_rows) as leaves:
        captured = loaded.model(**inputs).logits
    assert set(leaves.leaves) == {0, 1}
    assert_float32_close(captured, plain, terms=loaded.model.config.text_config.hidden_size)
    rows = leaves.leaves[1]
    assert rows.requires_grad and rows.is_leaf
    assert (rows >= 0).all()
    assert torch.allclose(rows.sum(-1), torch.ones(rows.shape[:-1]), atol=1e-5)


def test_nothing_is_left_behind_after_success_or_failure():
    loaded = tiny_llava(seed=4)
    model = loaded.model
    forced = _forced(loaded)
    with torch.no_grad():  # transformers installs its own output hooks on the first call
        model(**forced.inputs)
    before = _state(model)
    with loaded.adapter.capture.capture(model, [0, 1], forced.query_rows):
        model(**forced.inputs)
    assert _state(model) == before

    def explode(module, args, output):
        raise RuntimeError("boom inside the forward")

    handle = model.model.language_model.layers[1].register_forward_hook(explode)
    before = _state(model)
    with (
        pytest.raises(RuntimeError, match="boom"),
        loaded.adapter.capture.capture(model, [0, 1], forced.query_rows),
    ):
        model(**forced.inputs)
    assert _state(model) == before
    handle.remove()
    with torch.no_grad():
        model(**forced.inputs)


def test_engine_restores_parameters_flags_after_an_error():
    from dexar_core.engine import attention_gradients

    loaded = tiny_llava(seed=6)
    forced = _forced(loaded)
    layout = loaded.adapter.locator.locate(
        loaded.adapter.prepare(loaded, [noise_image(0)], "what color is the circle?")
    ).with_length(forced.key_length)
    flags = [p.requires_grad for p in loaded.model.parameters()]
    with pytest.raises(MethodError, match="chunk_size"):
        attention_gradients(loaded, forced, layout, (0, 1), chunk_size=0)
    with pytest.raises(IndexError):
        attention_gradients(loaded, forced, layout, (0, 7))
    assert [p.requires_grad for p in loaded.model.parameters()] == flags
    assert loaded.model.config.text_config._attn_implementation == "sdpa"
