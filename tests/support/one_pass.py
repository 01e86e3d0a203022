"""The one-pass engine and the straightforward reference on the same prompt and answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dexar_core.engine import attention_gradients
from dexar_core.records import AttentionGradients, LoadedModel
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error


def one_pass_and_reference(
    loaded: LoadedModel,
    visuals: Sequence[Any],
    prompt: str,
    answer: str | None,
    max_new_tokens: int = 3,
) -> tuple[AttentionGradients, np.ndarray]:
    """The engine's record and the reference's gradients on every explained layer.

    The answer is teacher-forced: ``answer`` encoded, or with ``answer=None`` the model's
    own answer of at most ``max_new_tokens`` tokens.
    """
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, list(visuals), prompt)
    layout = adapter.locator.locate(prepared)
    if answer is None:
        answer_ids = adapter.generate(loaded, prepared, max_new_tokens)
    else:
        answer_ids = adapter.encode_answer(loaded, prepared, answer)
    forced = adapter.teacher_forced(loaded, prepared, answer_ids)
    layers = list(range(adapter.decoder_parts(loaded.model).num_layers))
    record = attention_gradients(loaded, forced, layout.with_length(forced.key_length), layers)
    return record, naive_attention_gradients(loaded, prepared, answer_ids, layers)


def one_pass_error(
    loaded: LoadedModel, visuals: Sequence[Any], prompt: str, answer: str | None
) -> float:
    """The relative error of the engine's gradients against the reference.

    Every explained layer, the answer teacher-forced (see :func:`one_pass_and_reference`);
    the comparison is checked not to be vacuous (some gradient reaches V).
    """
    record, reference = one_pass_and_reference(loaded, visuals, prompt, answer)
    assert record.gradients.shape == reference.shape
    assert np.max(record.gradients[..., record.layout.visual_mask]) > 0, "vacuous comparison"
    return relative_error(record.gradients, reference)
