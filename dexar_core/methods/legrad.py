"""LeGrad baseline: layer-wise ReLU'd attention gradients, no head or token weighting."""

from __future__ import annotations

import numpy as np

from dexar_core.methods.attention import summed_over_tokens
from dexar_core.methods.base import Method, MethodResult
from dexar_core.records import AttentionGradients


class LeGradMethod(Method):
    """E^t = sum_l mean_i ReLU(d s^{l,t} / d A^{l,i}[q_t, V]) (Bousselham et al., LeGrad).

    The per-layer targets are DEX-AR's logit-lens targets; unlike DEX-AR no head is
    weighted and the sequence map is the plain sum over tokens.

    Args:
        layers: ``"all"`` (default), ``k`` for the last k layers, or layer indices.
    """

    name = "legrad"

    def explain(self, record: AttentionGradients) -> MethodResult:
        """See :meth:`Method.explain`."""
        on_visual = record.gradients[..., record.layout.visual_positions]
        per_layer = on_visual.mean(axis=2, dtype=np.float32)
        return summed_over_tokens(per_layer.sum(axis=1, dtype=np.float32))
