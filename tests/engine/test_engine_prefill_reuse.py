"""A free run's explanation continues from generation's prefill (docs/method.md §7).

``generate`` already ran the prompt without grad; the decoder-only adapters keep its keys
and values (``ExplainedUnits.prefill``) and the engine's prompt cache starts from them.
Each adapter whose ``teacher_forced`` gives ``prompt_inputs`` (LLaVA, Qwen2-VL, the
PaliGemma example) must give the same record with and without the reuse, run the vision
tower once per free run, and run no prompt forward in the explanation.
"""

from __future__ import annotations

from contextlib import contextmanager

import attrs
import numpy as np
import pytest
from llava_fixtures import noise_image, tiny_llava

from dexar_core.api import explain
from dexar_core.interfaces import GradientRequest
from dexar_core.records import LoadedModel
from dexar_plugins.testing.tolerance import assert_float32_close

PROMPT = "what color is the circle?"


def _qwen() -> LoadedModel:
    from dexar_qwen_vl.adapter import QwenVLAdapter
    from dexar_qwen_vl.tiny import build_tiny_qwen_vl

    model, processor = build_tiny_qwen_vl(version="2", seed=1)
    return LoadedModel(model=model, processor=processor, adapter=QwenVLAdapter(), model_id="t")


def _vision_tower(model):
    inner = model.model
    return inner.visual if hasattr(inner, "visual") else inner.vision_tower


@contextmanager
def _calls(module, lengths: list[int] | None = None):
    """Count ``module``'s forward calls (and record the sequence length it ran)."""
    calls: list[int] = []

    def record(_, args, kwargs):
        calls.append(1)
        if lengths is not None:
            hidden = args[0] if args else kwargs["hidden_states"]
            lengths.append(int(hidden.shape[1]))

    handle = module.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def _assert_same_record(actual, expected) -> None:
    for name in ("gradients", "attentions", "targets"):
        assert_float32_close(getattr(actual, name), getattr(expected, name), err_msg=name)
    assert actual.answer_ids == expected.answer_ids
    assert np.array_equal(actual.visible, expected.visible)


def _check_reuse(loaded: LoadedModel, chunk_size: int | None = None) -> None:
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(3)], PROMPT)
    layout = adapter.locator.locate(prepared)
    parts = adapter.decoder_parts(loaded.model)
    layers = tuple(range(parts.num_layers))
    tower = _vision_tower(loaded.model)
    with _calls(tower) as generation_calls:
        units = adapter.explained_units(loaded, prepared, answer=None, max_new_tokens=5)
    assert units.prefill is not None and units.generated
    assert units.prefill.length == prepared.inputs["input_ids"].shape[1]
    lengths: list[int] = []
    request = GradientRequest(loaded, prepared, layout, units, layers, chunk_size=chunk_size)
    with _calls(tower) as explanation_calls, _calls(parts.layers[0], lengths):
        reused = adapter.gradients.attention_gradients(request)
    # One vision-tower pass per free run (generation's); the explanation runs the answer
    # rows alone, chunk by chunk, and no prompt forward.
    assert len(generation_calls) == 1 and not explanation_calls
    size = len(units.ids) if chunk_size is None else chunk_size
    assert lengths == [
        min(size, len(units.ids) - start) for start in range(0, len(units.ids), size)
    ]
    recomputed = adapter.gradients.attention_gradients(
        attrs.evolve(request, units=attrs.evolve(units, prefill=None))
    )
    _assert_same_record(reused, recomputed)
    # The prefill stays whole: the same units explain again to the same record.
    again = adapter.gradients.attention_gradients(request)
    _assert_same_record(again, reused)


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_llava_free_run_reuses_the_prefill_exactly(chunk_size):
    _check_reuse(tiny_llava(seed=21), chunk_size=chunk_size)


def test_qwen_free_run_reuses_the_prefill_with_its_rope_deltas():
    _check_reuse(_qwen())


def test_paligemma_free_run_reuses_the_prefix_attending_both_ways(paligemma):
    _check_reuse(paligemma())


def test_a_prefill_serves_only_the_inputs_it_ran_on():
    """The same prompt prepared again (other tensors, maybe other pixels) runs its own."""
    loaded = tiny_llava(seed=22)
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [noise_image(4)], PROMPT)
    units = adapter.explained_units(loaded, prepared, answer=None, max_new_tokens=4)
    other = adapter.prepare(loaded, [noise_image(5)], PROMPT)
    layout = adapter.locator.locate(other)
    request = GradientRequest(loaded, other, layout, units, (0, 1))
    with _calls(_vision_tower(loaded.model)) as calls:
        record = adapter.gradients.attention_gradients(request)
    assert len(calls) == 1
    expected = adapter.gradients.attention_gradients(
        attrs.evolve(request, units=attrs.evolve(units, prefill=None))
    )
    _assert_same_record(record, expected)


def test_a_given_answer_keeps_no_prefill():
    loaded = tiny_llava(seed=23)
    prepared = loaded.adapter.prepare(loaded, [noise_image(6)], PROMPT)
    units = loaded.adapter.explained_units(
        loaded, prepared, answer="a red circle", max_new_tokens=4
    )
    assert units.prefill is None


def test_an_adapter_without_the_prompt_cache_keeps_no_prefill():
    loaded = tiny_llava(seed=24)
    loaded.adapter.prompt_cache = False
    prepared = loaded.adapter.prepare(loaded, [noise_image(7)], PROMPT)
    units = loaded.adapter.explained_units(loaded, prepared, answer=None, max_new_tokens=4)
    assert units.prefill is None


def test_explain_runs_the_vision_tower_once_per_free_run():
    loaded = tiny_llava(seed=25)
    tower = _vision_tower(loaded.model)
    with _calls(tower) as calls:
        explanation = explain(loaded, noise_image(8), PROMPT, max_new_tokens=4)
    assert explanation.generated and len(calls) == 1
