"""Percentile bootstrap confidence intervals over the items of a benchmark.

Items, not tokens, are the unit that is resampled: a token-level rate (the pointing
game) or a pooled AUROC is recomputed on each resample of whole items, so tokens of one
answer stay together (a cluster bootstrap). Every statistic of one summary sees the same
resamples, drawn from one seeded generator, so a summary is reproducible.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dexar_core.errors import InputError

__all__ = ["LEVEL", "RESAMPLES", "percentile_interval", "resample_indices"]

RESAMPLES = 1000
"""Bootstrap resamples per summary."""

LEVEL = 0.95
"""Coverage of the reported intervals."""


def resample_indices(items: int, resamples: int = RESAMPLES, seed: int = 0) -> npt.NDArray[np.intp]:
    """``[resamples, items]`` item indices drawn with replacement.

    Args:
        items: how many items the statistic is computed over (at least 1).
        resamples: how many bootstrap resamples (at least 1).
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same draws.
    """
    if items < 1 or resamples < 1:
        raise InputError(
            f"bootstrap: needs at least one item and one resample, got {items} items and "
            f"{resamples} resamples."
        )
    return np.random.default_rng(seed).integers(0, items, size=(resamples, items))


def percentile_interval(samples: npt.ArrayLike, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of a statistic's values over the bootstrap resamples.

    Args:
        samples: the statistic computed on each resample (NaN where it is undefined).
        level: the interval's coverage, in (0, 1).

    Returns:
        ``(low, high)``; both NaN when the statistic is undefined on half of the
        resamples or more (e.g. an AUROC whose items rarely hold both classes),
        otherwise the interval of the resamples where it is defined.
    """
    if not 0 < level < 1:
        raise InputError(f"bootstrap: level must lie in (0, 1), got {level!r}.")
    values = np.asarray(samples, dtype=np.float64).reshape(-1)
    defined = values[np.isfinite(values)]
    if defined.size * 2 <= values.size:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high)
