"""DEX-AR's outputs from the engine's gradients against those from the naive reference."""

from __future__ import annotations

import attrs
import numpy as np

from dexar_core.engine import attention_gradients
from dexar_core.methods.dexar import DexarMethod
from dexar_core.records import AttentionGradients, LoadedModel
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error

COMPARED = ("token_relevance", "sequence_relevance", "token_weights", "head_weights")


def assert_maps_equal_the_naive_maps(
    record: AttentionGradients, reference: np.ndarray, tolerance: float
) -> None:
    """DEX-AR on the one-pass record and on the same record with the naive gradients agree.

    Each output's ``relative_error`` (relative to its largest entry) is at most
    ``tolerance``; the failure names the output.
    """
    naive = attrs.evolve(record, gradients=reference)
    method = DexarMethod()
    fast, slow = method.explain(record), method.explain(naive)
    for name in COMPARED:
        error = relative_error(getattr(fast, name), getattr(slow, name))
        assert error <= tolerance, f"{name}: relative error {error:.2e} > {tolerance:g}"


def one_pass_error(loaded: LoadedModel, images: list, prompt: str, answer: str) -> float:
    """The relative error of the one-pass engine's gradients against the naive reference.

    Every decoder layer, the answer teacher-forced; also checks the gradients reach V.
    """
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, images, prompt)
    layout = adapter.locator.locate(prepared)
    answer_ids = adapter.encode_answer(loaded, prepared, answer)
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layers = list(range(adapter.decoder_parts(loaded.model).num_layers))
    record = attention_gradients(loaded, forced, layout.with_length(forced.key_length), layers)
    reference = naive_attention_gradients(loaded, prepared, answer_ids, layers)
    assert record.gradients.shape == reference.shape
    assert record.gradients[..., record.layout.visual_mask].max() > 0
    return relative_error(record.gradients, reference)
