"""Generic attention explainability baseline (Chefer, Gur and Wolf, ICCV 2021)."""

from __future__ import annotations

import numpy as np

from dexar_core.methods.attention import summed_over_tokens
from dexar_core.methods.base import Method, MethodResult
from dexar_core.methods.rollout import query_row_products, require
from dexar_core.records import AttentionGradients


class GaeMethod(Method):
    """Relevance propagation R <- R + mean_i (dz_t/dA^{l,i} * A^{l,i})^+ R, row q_t on V.

    R starts as the identity; the layers are applied in order. z_t is the final-layer
    logit of v_t (the model's own output logit at q_t); its gradients are total
    derivatives through the whole model (``full_gradients``), one backward per token.
    Self-attention only, as in the paper's rule for a single modality's self-attention.

    Args:
        layers: ``"all"`` (default), ``k`` for the last k layers, or layer indices.
    """

    name = "gae"
    needs = frozenset({"full_attention", "full_gradients"})

    def explain(self, record: AttentionGradients) -> MethodResult:
        """See :meth:`Method.explain`."""
        full = require(record, "full_attentions", self.name, "full_attention")
        gradients = require(record, "full_gradients", self.name, "full_gradients")
        identity = np.eye(full.shape[-1])
        relevance = []
        for t, row in enumerate(record.query_rows):
            weighted = np.maximum(gradients[t].astype(np.float64) * full, 0.0).mean(axis=1)
            relevance.append(query_row_products(np.array([row]), weighted + identity)[0])
        visual = record.layout.visual_positions
        return summed_over_tokens(np.stack(relevance)[:, visual])
