"""Attention x gradient baseline (the DEX-AR authors' appendix baseline)."""

from __future__ import annotations

import numpy as np

from dexar_core.errors import MethodError
from dexar_core.methods.attention import summed_over_tokens
from dexar_core.methods.base import Method, MethodResult
from dexar_core.records import AttentionGradients


class AttnGradMethod(Method):
    """E^t = sum_l ReLU( sum_i A^{l,i}[q_t, V] * d s^{l,t} / d A^{l,i}[q_t, V] ).

    The gradients are the signed ones (the ReLU comes after the sum over heads), so the
    method declares the engine's ``raw_gradients`` need.

    Args:
        layers: ``"all"`` (default), ``k`` for the last k layers, or layer indices.
    """

    name = "attn_grad"
    needs = frozenset({"raw_gradients"})

    def explain(self, record: AttentionGradients) -> MethodResult:
        """See :meth:`Method.explain`."""
        if record.raw_gradients is None:
            raise MethodError(
                "attn_grad needs the signed attention gradients (record.raw_gradients), "
                "but the record has none; build it with "
                "attention_gradients(..., needs=AttnGradMethod.needs)."
            )
        visual = record.layout.visual_positions
        product = record.attentions[..., visual] * record.raw_gradients[..., visual]
        per_layer = np.maximum(product.sum(axis=2, dtype=np.float32), 0.0)
        return summed_over_tokens(per_layer.sum(axis=1, dtype=np.float32))
