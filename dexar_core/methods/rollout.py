"""Attention rollout baseline (Abnar and Zuidema, 2020) over the decoder's layers."""

from __future__ import annotations

import numpy as np

from dexar_core.errors import MethodError
from dexar_core.methods.attention import summed_over_tokens
from dexar_core.methods.base import Method, MethodResult
from dexar_core.records import AttentionGradients


def query_row_products(rows: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Rows of the product ``factors[-1] @ ... @ factors[0]`` selected by ``rows``.

    Multiplying a one-hot row vector from the left, last layer first, gives the row
    q_t of the whole product in O(L K^2) instead of O(L K^3).

    Args:
        rows: ``[T]`` row indices.
        factors: ``[L, K, K]`` per-layer matrices, first layer first.

    Returns:
        ``[T, K]`` float64.
    """
    vectors = np.zeros((len(rows), factors.shape[-1]))
    vectors[np.arange(len(rows)), rows] = 1.0
    for factor in factors[::-1]:
        vectors = vectors @ factor
    return vectors


def require(record: AttentionGradients, field: str, method: str, need: str) -> np.ndarray:
    """The record's optional ``field``, or a MethodError naming the missing need."""
    value = getattr(record, field)
    if value is None:
        raise MethodError(
            f"{method} needs record.{field}, but the record has none; build it with "
            f"attention_gradients(..., needs={{{need!r}}})."
        )
    return np.asarray(value)


class RolloutMethod(Method):
    """Row q_t of prod_l norm(mean_i A^{l,i} + I), restricted to V.

    ``norm`` divides each row by its sum. The layers are multiplied in order (the last
    explained layer leftmost). Needs every row of the attention matrices
    (``full_attention``), so it runs on decoder self-attention only.

    Args:
        layers: ``"all"`` (default), ``k`` for the last k layers, or layer indices.
    """

    name = "rollout"
    needs_gradients = False
    needs = frozenset({"full_attention"})

    def explain(self, record: AttentionGradients) -> MethodResult:
        """See :meth:`Method.explain`."""
        full = require(record, "full_attentions", self.name, "full_attention")
        mixed = full.astype(np.float64).mean(axis=1) + np.eye(full.shape[-1])
        mixed /= mixed.sum(axis=-1, keepdims=True)
        rolled = query_row_products(np.asarray(record.query_rows), mixed)
        return summed_over_tokens(rolled[:, record.layout.visual_positions])
