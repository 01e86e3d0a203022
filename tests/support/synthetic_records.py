"""Engine records built from a layout and a gradient tensor, for method-level tests."""

from __future__ import annotations

import numpy as np

from dexar_core.records import AttentionGradients
from dexar_core.values import VisualLayout


def record_of(layout: VisualLayout, gradients: np.ndarray) -> AttentionGradients:
    """An :class:`AttentionGradients` with these ``[T, L, H, K]`` gradients, every key
    visible, zero attentions and targets."""
    tokens, layers = gradients.shape[:2]
    return AttentionGradients(
        gradients=gradients,
        attentions=np.zeros_like(gradients),
        targets=np.zeros((layers, tokens), np.float32),
        visible=np.ones((tokens, layout.sequence_length), dtype=bool),
        layers=tuple(range(layers)),
        layout=layout,
        answer_ids=tuple(range(tokens)),
        query_rows=tuple(range(tokens)),
    )
