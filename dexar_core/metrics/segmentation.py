"""Segmentation scores of a saliency map against an object mask (docs/method.md §11).

Every score first brings the map ``A`` to the mask's size (bilinear, see
:func:`dexar_core.heatmap.upsample`) and min-max normalises it to ``[0, 1]``. The mask
``M`` is the union of the objects (boolean). With ``N`` the valid pixels:

- ``soft_iou = sum(A*M) / (sum A + sum M - sum(A*M))``
- ``best_iou`` = max over the 20 thresholds ``linspace(0, 1, 20, endpoint=False)`` of the
  IoU between ``A > thr`` (strict) and ``M``
- ``epg`` (energy pointing game) ``= sum(A*M) / sum(A)``
- ``snr = 10 log10(mean of A inside M / mean of A outside M)``, in decibels

Every score takes ``(saliency_map, mask, valid=None)``, the arguments documented once at
:func:`segmentation_scores`, which computes all four from one normalisation.

Conventions, the same for every function here:

- **Constant maps.** Min-max normalisation sends a constant map to zeros, which would
  make EPG 0/0. A constant map shows no spatial preference, so it is scored as the
  uniform map of ones: exactly the uniform chance line.
- **Void pixels.** ``valid`` (optional, boolean, the mask's shape) marks the pixels that
  count; PascalVOC's 255 "void" border is ``valid = label != 255``. Invalid pixels are
  left out of every sum and mean. Normalisation uses the whole map: the annotation does
  not change what the method produced.
- **Undefined ratios.** A ratio whose denominator is zero is NaN (e.g. an empty mask for
  SNR). SNR is ``+inf`` when the map is zero everywhere outside the mask but not inside,
  and ``-inf`` in the opposite case. Aggregate with ``np.nanmean`` and report how many
  images were undefined. Only malformed inputs (shapes, non-finite maps) raise.

The chance lines (:func:`uniform_map`, :func:`random_smooth_map`, :func:`chance_scores`)
go beside every reported score: these metrics track object area.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dexar_core.errors import InputError
from dexar_core.heatmap import minmax, upsample

__all__ = [
    "BEST_IOU_THRESHOLDS",
    "as_boolean_mask",
    "best_iou",
    "chance_scores",
    "epg",
    "normalised_map",
    "random_smooth_map",
    "segmentation_scores",
    "snr",
    "soft_iou",
    "uniform_map",
]

BEST_IOU_THRESHOLDS: npt.NDArray[np.float64] = np.linspace(0, 1, 20, endpoint=False)
"""The thresholds of ``best_iou``; a pixel is foreground when ``A > thr``."""

RANDOM_SMOOTH_GRID: tuple[int, int] = (24, 24)
"""Noise cells of the random smooth map, the same for every model evaluated.

A chance line that does not depend on the model keeps the lines of several models one
line: 24x24 cells, as fine as the visual-token grid of a ViT-L/14 at 336 px (the grid
of the models the method was first evaluated on). Pass ``grid`` to
:func:`random_smooth_map` or :func:`chance_scores` to match another granularity.
"""


def soft_iou(
    saliency_map: npt.ArrayLike, mask: npt.ArrayLike, valid: npt.ArrayLike | None = None
) -> float:
    """Soft IoU ``sum(A*M) / (sum A + sum M - sum(A*M))`` of the normalised map and the mask.

    Returns:
        A value in ``[0, 1]``; NaN when the map and the mask are both empty on the valid
        pixels.
    """
    return _soft_iou(*_scoring_pixels(saliency_map, mask, valid, "soft_iou"))


def best_iou(
    saliency_map: npt.ArrayLike, mask: npt.ArrayLike, valid: npt.ArrayLike | None = None
) -> float:
    """Best IoU of ``A > thr`` and the mask over :data:`BEST_IOU_THRESHOLDS`.

    Returns:
        A value in ``[0, 1]``; thresholds where both sets are empty are skipped, and the
        result is NaN when every threshold is skipped.
    """
    return _best_iou(*_scoring_pixels(saliency_map, mask, valid, "best_iou"))


def epg(
    saliency_map: npt.ArrayLike, mask: npt.ArrayLike, valid: npt.ArrayLike | None = None
) -> float:
    """Energy pointing game ``sum(A*M) / sum(A)``: the share of the map's energy on the object.

    Returns:
        A value in ``[0, 1]``; NaN when the map is zero on every valid pixel.
    """
    return _epg(*_scoring_pixels(saliency_map, mask, valid, "epg"))


def snr(
    saliency_map: npt.ArrayLike, mask: npt.ArrayLike, valid: npt.ArrayLike | None = None
) -> float:
    """Signal-to-noise ratio ``10 log10(mean inside / mean outside)`` in decibels.

    Returns:
        The ratio in dB: 0 for the uniform map; ``+inf`` when the map is zero outside
        the mask only, ``-inf`` when zero inside only; NaN when the mask or its
        complement has no valid pixel, or the map is zero on both.
    """
    return _snr(*_scoring_pixels(saliency_map, mask, valid, "snr"))


def segmentation_scores(
    saliency_map: npt.ArrayLike, mask: npt.ArrayLike, valid: npt.ArrayLike | None = None
) -> dict[str, float]:
    """All four scores of one map, normalising it once.

    Args:
        saliency_map: a finite 2-D map of any size and scale.
        mask: the object mask (boolean, or 0/1 values), the evaluation size.
        valid: pixels that count (boolean, the mask's shape); all when None.

    Returns:
        ``{"soft_iou", "best_iou", "epg", "snr"}`` as floats, with the conventions of the
        single-score functions.

    Raises:
        InputError: for a map that is not finite and 2-D, a mask that is not boolean-like,
            or shapes that disagree.
    """
    map_pixels, mask_pixels = _scoring_pixels(saliency_map, mask, valid, "segmentation_scores")
    return {
        "soft_iou": _soft_iou(map_pixels, mask_pixels),
        "best_iou": _best_iou(map_pixels, mask_pixels),
        "epg": _epg(map_pixels, mask_pixels),
        "snr": _snr(map_pixels, mask_pixels),
    }


def uniform_map(shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """The uniform chance map: ones everywhere.

    Its soft IoU, best IoU and EPG all equal the mask's area fraction; its SNR is 0 dB.

    Args:
        shape: ``(height, width)``.
    """
    return np.ones(shape, dtype=np.float32)


def random_smooth_map(
    shape: tuple[int, int], seed: int, grid: tuple[int, int] = RANDOM_SMOOTH_GRID
) -> npt.NDArray[np.float32]:
    """The random smooth chance map: uniform noise on a coarse grid, upsampled bilinearly.

    The noise has the granularity of a visual-token grid, so it is as smooth as a real
    explanation but carries no information about the image.

    Args:
        shape: ``(height, width)`` of the output.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same map.
        grid: ``(rows, columns)`` of noise cells.

    Returns:
        A float32 map of ``shape`` in ``[0, 1]``, min-max normalised.
    """
    noise = np.random.default_rng(seed).random(grid, dtype=np.float32)
    return minmax(upsample(noise, (shape[1], shape[0])))


def chance_scores(
    mask: npt.ArrayLike,
    seed: int,
    valid: npt.ArrayLike | None = None,
    grid: tuple[int, int] = RANDOM_SMOOTH_GRID,
) -> dict[str, dict[str, float]]:
    """The chance lines for one mask: scores of the uniform and the random smooth map.

    Args:
        mask: the object mask (boolean, or 0/1 values).
        seed: seed of the random smooth map.
        valid: pixels that count (boolean, the mask's shape); all when None.
        grid: ``(rows, columns)`` of the random smooth map's noise cells.

    Returns:
        ``{"uniform": scores, "random_smooth": scores}``, each as
        :func:`segmentation_scores` gives them.
    """
    shape = as_boolean_mask(mask, "mask", "chance_scores").shape
    return {
        "uniform": segmentation_scores(uniform_map(shape), mask, valid),
        "random_smooth": segmentation_scores(random_smooth_map(shape, seed, grid), mask, valid),
    }


def normalised_map(saliency_map: npt.ArrayLike, shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """The map as every score sees it: at ``shape``, min-max normalised, constant -> ones.

    Normalising before the resampling too keeps any scale of input inside float32.

    Args:
        saliency_map: a finite 2-D map of any size and scale.
        shape: ``(height, width)`` of the mask.

    Raises:
        InputError: for a map that is not 2-D or holds non-finite values.
    """
    array = np.asarray(saliency_map)
    if array.ndim != 2 or array.size == 0:
        raise InputError(
            f"segmentation scores: expected a non-empty 2-D saliency map, got shape "
            f"{array.shape}. Reshape the token map to its grid first (heatmap.to_grid)."
        )
    normalised = minmax(array)
    if normalised.shape != shape:
        normalised = minmax(upsample(normalised, (shape[1], shape[0])))
    if not normalised.any():
        return uniform_map(shape)
    return normalised


def _scoring_pixels(
    saliency_map: npt.ArrayLike,
    mask: npt.ArrayLike,
    valid: npt.ArrayLike | None,
    caller: str,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The normalised map and the mask on the valid pixels, flattened."""
    object_mask = as_boolean_mask(mask, "mask", caller)
    map_pixels = normalised_map(saliency_map, object_mask.shape).astype(np.float64)
    if valid is None:
        return map_pixels.reshape(-1), object_mask.reshape(-1)
    valid_mask = as_boolean_mask(valid, "valid", caller)
    if valid_mask.shape != object_mask.shape:
        raise InputError(
            f"{caller}: valid has shape {valid_mask.shape} but mask has "
            f"{object_mask.shape}; give one flag per mask pixel."
        )
    return map_pixels[valid_mask], object_mask[valid_mask]


def as_boolean_mask(mask: npt.ArrayLike, name: str, caller: str) -> npt.NDArray[np.bool_]:
    """A 2-D boolean copy of a boolean or 0/1 mask.

    Args:
        mask: the mask to check.
        name: the argument's name, for the error message.
        caller: the public function checking it, for the error message.

    Raises:
        InputError: for a mask that is not 2-D and non-empty, or holds values other than
            0 and 1.
    """
    array = np.asarray(mask)
    if array.ndim != 2 or array.size == 0:
        raise InputError(f"{caller}: {name} must be a non-empty 2-D array, got {array.shape}.")
    if array.dtype == np.bool_:
        return array.copy()
    if not np.isin(array, (0, 1)).all():
        found = np.unique(array[~np.isin(array, (0, 1))])[:5].tolist()
        raise InputError(
            f"{caller}: {name} must be boolean or 0/1, found values {found}. For a "
            "PascalVOC label image pass mask=(label > 0) & (label != 255) and "
            "valid=(label != 255)."
        )
    return array.astype(bool)


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN for a zero denominator."""
    return float(numerator / denominator) if denominator != 0 else float("nan")


def _soft_iou(map_pixels: npt.NDArray[np.float64], mask_pixels: npt.NDArray[np.bool_]) -> float:
    overlap = map_pixels[mask_pixels].sum()
    return _ratio(overlap, map_pixels.sum() + mask_pixels.sum() - overlap)


def _best_iou(map_pixels: npt.NDArray[np.float64], mask_pixels: npt.NDArray[np.bool_]) -> float:
    foreground = map_pixels[None, :] > BEST_IOU_THRESHOLDS[:, None]
    intersections = (foreground & mask_pixels).sum(axis=1)
    unions = (foreground | mask_pixels).sum(axis=1)
    defined = unions > 0
    if not defined.any():
        return float("nan")
    return float((intersections[defined] / unions[defined]).max())


def _epg(map_pixels: npt.NDArray[np.float64], mask_pixels: npt.NDArray[np.bool_]) -> float:
    return _ratio(map_pixels[mask_pixels].sum(), map_pixels.sum())


def _snr(map_pixels: npt.NDArray[np.float64], mask_pixels: npt.NDArray[np.bool_]) -> float:
    inside = map_pixels[mask_pixels]
    outside = map_pixels[~mask_pixels]
    if inside.size == 0 or outside.size == 0:
        return float("nan")
    mean_inside, mean_outside = inside.mean(), outside.mean()
    if mean_inside == 0 and mean_outside == 0:
        return float("nan")
    if mean_outside == 0:
        return float("inf")
    if mean_inside == 0:
        return float("-inf")
    return float(10 * np.log10(mean_inside / mean_outside))
