"""DEX-AR's outputs from the engine's gradients against those from the naive reference."""

from __future__ import annotations

import attrs
import numpy as np

from dexar_core.methods.dexar import DexarMethod
from dexar_core.records import AttentionGradients
from dexar_plugins.testing.reference import relative_error

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
