"""The prompt-cache pass gives the full pass's numbers and the definition's (docs/method.md §7).

Decoder-only adapters give ``TeacherForcedPass.prompt_inputs``: the engine runs the
prompt once without grad into a KV cache and the answer rows after it
(``dexar_core.engine.prompt_cache``). Dropping ``prompt_inputs`` forces the one full pass over
prompt + answer, so the two paths are compared on the same model and answer, and both
against the straightforward reference: LLaVA (SDPA, eager, grouped-query), Qwen2-VL and
Qwen2.5-VL (M-RoPE positions continued through the cache, videos included), BLIP-2 with
OPT (the language model continues the cache), PaliGemma (a prefix attending to itself in
both directions; Gemma 2's sliding-window layers), at several chunk sizes.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from llava_fixtures import noise_image, tiny_llava
from PIL import Image

from dexar_core.engine import RECORD_NEEDS, attention_gradients
from dexar_core.errors import DexarError, MethodError
from dexar_core.images import Video
from dexar_core.records import LoadedModel
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error

TOLERANCE = 1e-5
PROMPT = "what color is the circle?"


def _image(seed: int, height: int = 64, width: int = 64) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _rows_run(loaded: LoadedModel, prepared, forced, layers, **options):
    """The record, and the lengths of the sequences layer 0 ran, in order."""
    lengths: list[int] = []

    def record_length(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        lengths.append(int(hidden.shape[1]))

    first_layer = loaded.adapter.decoder_parts(loaded.model).layers[0]
    handle = first_layer.register_forward_pre_hook(record_length, with_kwargs=True)
    try:
        layout = loaded.adapter.locator.locate(prepared)
        layout = loaded.adapter.layout_for_answer(loaded, prepared, forced, layout)
        layout = layout.with_length(forced.key_length)
        record = attention_gradients(loaded, forced, layout, layers, **options)
    finally:
        handle.remove()
    return record, lengths


def _forced(loaded: LoadedModel, visuals, answer: str | None, tokens: int = 4):
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, visuals, PROMPT)
    if answer is None:
        answer_ids = adapter.generate(loaded, prepared, tokens)
    else:
        answer_ids = adapter.encode_answer(loaded, prepared, answer)
    return prepared, answer_ids, adapter.teacher_forced(loaded, prepared, answer_ids)


def _check_paths(loaded: LoadedModel, visuals, answer, chunk_sizes=(None,), tokens=4):
    """Cached (each chunk size) vs full vs naive; the cached path must really run."""
    prepared, answer_ids, forced = _forced(loaded, visuals, answer, tokens)
    assert forced.prompt_inputs is not None
    layers = tuple(range(loaded.adapter.decoder_parts(loaded.model).num_layers))
    full_forced = attrs.evolve(forced, prompt_inputs=None)
    full, full_lengths = _rows_run(loaded, prepared, full_forced, layers)
    assert full_lengths == [forced.key_length]
    reference = naive_attention_gradients(loaded, prepared, answer_ids, layers)
    assert np.abs(reference).max() > 0
    assert relative_error(full.gradients, reference) <= TOLERANCE
    total, prompt = len(answer_ids), forced.query_rows[0] + 1
    for chunk_size in chunk_sizes:
        cached, lengths = _rows_run(loaded, prepared, forced, layers, chunk_size=chunk_size)
        size = total if chunk_size is None else min(chunk_size, total)
        chunks = [min(size, total - start) for start in range(0, total, size)]
        # the prompt once, then each chunk's query rows only
        assert lengths == [prompt, *chunks], (chunk_size, lengths)
        assert cached.gradients.shape == full.gradients.shape
        assert relative_error(cached.gradients, reference) <= TOLERANCE, chunk_size
        assert relative_error(cached.gradients, full.gradients) <= TOLERANCE, chunk_size
        assert relative_error(cached.attentions, full.attentions) <= TOLERANCE, chunk_size
        assert relative_error(cached.targets, full.targets) <= TOLERANCE, chunk_size
        np.testing.assert_array_equal(cached.visible, full.visible)
        assert cached.query_rows == full.query_rows
    return forced, full


@pytest.mark.parametrize(
    ("seed", "implementation", "kv_heads", "answer"),
    [
        (0, "sdpa", None, "a red circle at the left of a blue square"),
        (1, "eager", None, "a red circle at the left of a blue square"),
        (2, "sdpa", 2, None),
        (3, "eager", 2, None),
    ],
)
def test_llava_cached_pass_equals_the_full_pass_and_the_definition(
    seed, implementation, kv_heads, answer
):
    loaded = tiny_llava(seed=seed, attn_implementation=implementation, kv_heads=kv_heads)
    _check_paths(loaded, [noise_image(seed)], answer, chunk_sizes=(None, 1, 3, 64), tokens=5)


def test_signed_gradients_agree_between_the_paths():
    loaded = tiny_llava(seed=4)
    prepared, _, forced = _forced(loaded, [noise_image(4)], "a red circle at the left")
    layout = loaded.adapter.locator.locate(prepared).with_length(forced.key_length)
    full = attention_gradients(
        loaded, attrs.evolve(forced, prompt_inputs=None), layout, (0, 1), needs=RECORD_NEEDS
    )
    for chunk_size in (None, 2):
        cached = attention_gradients(
            loaded, forced, layout, (0, 1), chunk_size=chunk_size, needs=RECORD_NEEDS
        )
        assert (cached.raw_gradients < 0).any(), "the signed gradients must hold negatives"
        assert relative_error(cached.raw_gradients, full.raw_gradients) <= TOLERANCE
        np.testing.assert_array_equal(np.maximum(cached.raw_gradients, 0), cached.gradients)
        assert relative_error(cached.full_gradients, full.full_gradients) <= TOLERANCE


_QWEN: dict[tuple[str, str], LoadedModel] = {}


def _qwen(version: str, implementation: str) -> LoadedModel:
    from dexar_qwen_vl.adapter import QwenVLAdapter
    from dexar_qwen_vl.tiny import build_tiny_qwen_vl

    key = (version, implementation)
    if key not in _QWEN:
        model, processor = build_tiny_qwen_vl(
            version=version, seed=1, attn_implementation=implementation
        )
        _QWEN[key] = LoadedModel(
            model=model, processor=processor, adapter=QwenVLAdapter(), model_id="tiny"
        )
    return _QWEN[key]


@pytest.mark.parametrize(
    ("version", "implementation", "visuals"),
    [
        ("2", "sdpa", lambda: [_image(0, 48, 80)]),
        ("2", "eager", lambda: [_image(0, 48, 80), _image(1, 64, 32)]),
        (
            "2.5",
            "sdpa",
            lambda: [_image(2, 32, 48), Video(frames=[_image(s, 32, 48) for s in (3, 4, 5)])],
        ),
    ],
)
def test_qwen_m_rope_positions_continue_through_the_cache(version, implementation, visuals):
    """The answer rows run after the cache with the rope deltas of the prompt's images."""
    loaded = _qwen(version, implementation)
    _check_paths(loaded, visuals(), "red circle at the left", chunk_sizes=(None, 2))


def _blip2(language_model: str, implementation: str) -> LoadedModel:
    from dexar_blip2.adapter import Blip2Adapter
    from dexar_blip2.tiny import build_tiny_blip2

    model, processor = build_tiny_blip2(
        seed=0,
        language_model=language_model,
        attn_implementation=implementation,
        hidden_size=64,
        num_query_tokens=16,
    )
    return LoadedModel(model=model, processor=processor, adapter=Blip2Adapter(), model_id="t")


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_blip2_opt_continues_the_cache_with_its_language_model(implementation):
    loaded = _blip2("opt", implementation)
    _check_paths(loaded, [_image(5)], "a red circle", chunk_sizes=(None, 1))


def test_encoder_decoders_keep_the_full_pass():
    """Cross-attention keys are the encoder's: there is no prompt to cache."""
    loaded = _blip2("t5", "sdpa")
    _, _, forced = _forced(loaded, [_image(6)], "a red circle")
    assert forced.prompt_inputs is None


@pytest.mark.parametrize(
    "options", [{}, {"attn_implementation": "eager"}], ids=["gemma-sdpa", "gemma-eager"]
)
def test_paligemma_prefix_attending_both_ways_is_cached_exactly(paligemma, options):
    """The prompt attends to its last position too: the cache is cut after the prompt ran."""
    loaded = paligemma(**options)
    _check_paths(loaded, [_image(7, 32, 32)], "a red circle at the left", chunk_sizes=(None, 2))


def test_paligemma2_sliding_window_longer_than_the_prompt_is_cached_exactly(paligemma):
    """The window cuts the answer rows' keys (a plain cache would drop keys: it must not)."""
    loaded = paligemma(gemma2=True, sliding_window=24)
    assert loaded.model.config.text_config.layer_types == ["sliding_attention", "full_attention"]
    forced, full = _check_paths(
        loaded,
        [_image(7, 32, 32)],
        "a red circle at the left",
        chunk_sizes=(None, 2),
    )
    assert forced.query_rows[0] + 1 <= 24 < forced.query_rows[-1] + 1
    assert not full.gradients[-1, 0, :, : forced.query_rows[-1] - 24 + 1].any()


def test_paligemma2_sliding_window_shorter_than_the_prompt_keeps_the_full_pass(paligemma):
    """Its last prompt row would see only its window after the cache: the adapter says no."""
    loaded = paligemma(gemma2=True, sliding_window=20)
    prepared, answer_ids, forced = _forced(loaded, [_image(7, 32, 32)], "a red circle")
    assert forced.query_rows[0] + 1 > 20
    assert forced.prompt_inputs is None
    full, _ = _rows_run(loaded, prepared, forced, (0, 1))
    reference = naive_attention_gradients(loaded, prepared, answer_ids, (0, 1))
    assert not reference[-1, 0, :, : forced.query_rows[-1] - 20 + 1].any()  # outside the window
    assert relative_error(full.gradients, reference) <= TOLERANCE


def test_an_adapter_can_opt_out_of_the_prompt_cache():
    loaded = tiny_llava(seed=8)
    adapter = loaded.adapter
    adapter.prompt_cache = False  # an instance attribute: this adapter object only
    prepared, _, forced = _forced(loaded, [noise_image(8)], "a red circle")
    assert forced.prompt_inputs is None
    _, lengths = _rows_run(loaded, prepared, forced, (0, 1), chunk_size=1)
    assert lengths == [forced.key_length] * len(forced.answer_ids)


def test_prompt_inputs_of_the_wrong_length_are_an_adapter_error():
    loaded = tiny_llava(seed=9)
    prepared, _, forced = _forced(loaded, [noise_image(9)], "a red circle")
    short = dict(forced.prompt_inputs)
    short["input_ids"] = short["input_ids"][:, :-1]
    short["attention_mask"] = short["attention_mask"][:, :-1]
    layout = loaded.adapter.locator.locate(prepared).with_length(forced.key_length)
    with pytest.raises(DexarError, match=r"prompt_inputs of \d+ positions"):
        attention_gradients(loaded, attrs.evolve(forced, prompt_inputs=short), layout, (0, 1))


def test_an_empty_answer_is_refused():
    loaded = tiny_llava(seed=10)
    prepared, _, forced = _forced(loaded, [noise_image(10)], "red")
    layout = loaded.adapter.locator.locate(prepared).with_length(forced.key_length)
    empty = attrs.evolve(forced, query_rows=(), answer_ids=())
    with pytest.raises(MethodError, match="no token to explain"):
        attention_gradients(loaded, empty, layout, (0, 1))


def test_the_prompt_cache_leaves_the_model_as_it_was():
    loaded = tiny_llava(seed=11)
    prepared, _, forced = _forced(loaded, [noise_image(11)], "a red circle")
    layout = loaded.adapter.locator.locate(prepared).with_length(forced.key_length)
    inputs = {**forced.inputs, "logits_to_keep": 0}
    with torch.no_grad():
        before = loaded.model(**inputs).logits
    flags = [p.requires_grad for p in loaded.model.parameters()]
    attention_gradients(loaded, forced, layout, (0, 1), chunk_size=2)
    assert [p.requires_grad for p in loaded.model.parameters()] == flags
    with torch.no_grad():
        # bitwise: the same model, inputs and kernels as the forward before the pass
        torch.testing.assert_close(loaded.model(**inputs).logits, before, rtol=0, atol=0)
