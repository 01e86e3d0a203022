"""Raw attention baseline: head-mean attention of the answer rows (docs/method.md §10)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dexar_core.methods.base import Method, MethodResult
from dexar_core.records import AttentionGradients


def summed_over_tokens(token_relevance: np.ndarray) -> MethodResult:
    """A result whose sequence relevance is the plain sum over tokens, weights all 1.

    The shared ending of every baseline without token weighting.
    """
    token_relevance = token_relevance.astype(np.float32)
    return MethodResult(
        token_relevance=token_relevance,
        sequence_relevance=token_relevance.sum(axis=0, dtype=np.float32),
        token_weights=np.ones(token_relevance.shape[0], np.float32),
    )


class AttentionMethod(Method):
    """Mean over heads (and over the chosen layers) of A^{l,i}[q_t, V].

    Args:
        layers: ``1`` (default: the last layer only), ``"all"`` for the mean over every
            layer, ``k`` for the last k layers, or layer indices.
    """

    name = "attention"
    needs_gradients = False

    def __init__(self, *, layers: Any = 1) -> None:
        super().__init__(layers=layers)

    def explain(self, record: AttentionGradients) -> MethodResult:
        """See :meth:`Method.explain`."""
        on_visual = record.attentions[..., record.layout.visual_positions]
        return summed_over_tokens(on_visual.mean(axis=(1, 2), dtype=np.float32))
