"""Float32 comparisons whose tolerance holds on any x86 CPU.

Two float32 computations of the same numbers agree to the last bit only when they add in
the same order. Another BLAS kernel, another vector width (AVX2 or AVX-512), another
thread count or another attention kernel adds in another order, and a sum of ``n`` terms
may then move by about ``sqrt(n)`` units in the last place of its largest term. The
rounding error of an entry is that of the large entries it was computed with, not its
own: an elementwise relative tolerance (``rtol``) fails on the small entries of a
gradient on one machine and passes on another. So the tolerance here is absolute and
scaled to the reference's largest magnitude:
``atol = ulps * eps32 * max|expected| * sqrt(terms)``.

``terms`` is the length of the longest float32 sum behind an entry (a hidden size, a
number of keys); ``ulps`` (default 8) is the budget per such sum, for the few chained
operations of a tiny model. On the tiny models of the tests this stays near the
engine's stated equivalence with the naive reference, 1e-5 of the largest entry
(docs/method.md §7), so a real bug still fails.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)
"""The gap between 1 and the next float32, ``2**-23``."""


def as_array(values: Any) -> np.ndarray:
    """A float64 NumPy copy of an array, a torch tensor (any device, dtype) or a number."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def float32_tolerance(expected: Any, *, terms: int = 1, ulps: float = 8.0) -> float:
    """The absolute tolerance for float32 results close to ``expected``.

    Args:
        expected: the reference values.
        terms: the length of the longest float32 sum behind an entry (>= 1).
        ulps: units in the last place of the largest entry allowed per sum.

    Returns:
        ``ulps * eps32 * max|expected| * sqrt(terms)``; 0 for an all-zero reference.
    """
    if terms < 1:
        raise ValueError(f"terms is the length of a sum, at least 1; got {terms}.")
    reference = as_array(expected)
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    return ulps * FLOAT32_EPS * scale * math.sqrt(terms)


def assert_float32_close(
    actual: Any, expected: Any, *, terms: int = 1, ulps: float = 8.0, err_msg: str = ""
) -> None:
    """Assert that float32 results equal ``expected`` up to :func:`float32_tolerance`.

    Shapes must match exactly. The failure message gives the largest difference and the
    tolerance, both relative to ``max|expected|``.

    Raises:
        AssertionError: a shape differs or an entry is further off than the tolerance.
    """
    got, want = as_array(actual), as_array(expected)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape} is not {want.shape}. {err_msg}".rstrip())
    atol = float32_tolerance(want, terms=terms, ulps=ulps)
    if not want.size:
        return
    # A NaN on either side is infinitely far off, whatever the tolerance.
    gaps = np.nan_to_num(np.abs(got - want), nan=math.inf)
    difference = float(gaps.max())
    if difference > atol:
        scale = float(np.abs(want).max())
        worst = np.unravel_index(int(gaps.argmax()), want.shape)
        raise AssertionError(
            f"float32 results differ by {difference:.3e} at {tuple(map(int, worst))}, "
            f"{difference / scale if scale else math.inf:.2e} of max|expected| = {scale:.3e}; "
            f"allowed {atol:.3e} ({ulps:g} ulps x sqrt({terms}) terms). {err_msg}".rstrip()
        )
