"""Token grounding: does a token's map land on the object the token names? (docs/method.md §11).

For each answer token naming an object with its own mask: the pointing game (is the
map's maximum inside the object?), the IoU with the object's mask, the wrong-object
peak (is the maximum inside *another* object?) and the object contrast (the map's mean
on the object minus its mean on the background; below 0 the map is inverted). Across
tokens: how well ``delta^t`` separates object words from function words, as an AUROC.

Maps are brought to the mask's size and normalised exactly as the segmentation scores
do (:func:`dexar_core.metrics.segmentation.normalised_map`), so a constant map behaves
like the uniform map. ``valid`` marks the pixels that count (e.g. not VOC's void).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dexar_core.errors import InputError
from dexar_core.metrics.segmentation import as_boolean_mask, best_iou, normalised_map

__all__ = [
    "auroc",
    "object_contrast",
    "object_iou",
    "pointing_game",
    "uniform_pointing_chance",
    "wrong_object_peak",
]


def pointing_game(
    saliency_map: npt.ArrayLike,
    object_mask: npt.ArrayLike,
    valid: npt.ArrayLike | None = None,
) -> bool:
    """Whether the map's maximum pixel lies inside the object.

    Ties go to the first maximum in row-major order (``numpy.argmax``), so a constant map
    points at the top-left valid pixel. No tolerance margin around the object.

    Args:
        saliency_map: a finite 2-D map of any size and scale.
        object_mask: the object's mask (boolean, or 0/1 values), the evaluation size.
        valid: pixels that count (boolean, the mask's shape); the maximum is taken over
            valid pixels only. All pixels when None.

    Returns:
        True for a hit.

    Raises:
        InputError: for malformed inputs, an object mask without a valid pixel (there is
            nothing to point at), or no valid pixel at all.
    """
    object_pixels = as_boolean_mask(object_mask, "object_mask", "pointing_game")
    valid_pixels = _valid_pixels(valid, object_pixels.shape, "pointing_game")
    if not (object_pixels & valid_pixels).any():
        raise InputError(
            "pointing_game: object_mask has no valid pixel, so there is nothing to point "
            "at. Skip tokens whose object is absent from the image."
        )
    map_pixels = normalised_map(saliency_map, object_pixels.shape)[valid_pixels]
    return bool(object_pixels[valid_pixels][int(np.argmax(map_pixels))])


def wrong_object_peak(
    saliency_map: npt.ArrayLike,
    other_objects_mask: npt.ArrayLike,
    valid: npt.ArrayLike | None = None,
) -> bool:
    """Whether the map's maximum lies inside an object the token does not name.

    The pointing game played against the other objects' union: a hit here is a map that
    singles out the wrong object. Its uniform chance is the other objects' area fraction
    (:func:`uniform_pointing_chance` of ``other_objects_mask``).

    Args:
        saliency_map: a finite 2-D map of any size and scale.
        other_objects_mask: the union of the masks of the item's other objects.
        valid: pixels that count (boolean, the mask's shape); all when None.

    Raises:
        InputError: as :func:`pointing_game`; an item without another visible object has
            no wrong object to peak on.
    """
    return pointing_game(saliency_map, other_objects_mask, valid)


def object_contrast(
    saliency_map: npt.ArrayLike,
    object_mask: npt.ArrayLike,
    background_mask: npt.ArrayLike,
    valid: npt.ArrayLike | None = None,
) -> float:
    """The normalised map's mean on the object minus its mean on the background.

    Below 0 the map is *inverted*: darker on the object it names than on the pixels no
    object covers. A constant map scores exactly 0 (it is scored as the uniform map).

    Args:
        saliency_map: a finite 2-D map of any size and scale.
        object_mask: the named object's mask (boolean, or 0/1 values).
        background_mask: the pixels of no object, the same shape.
        valid: pixels that count (boolean, the mask's shape); all when None.

    Returns:
        A value in ``[-1, 1]``; NaN when the object or the background has no valid pixel.
    """
    object_pixels = as_boolean_mask(object_mask, "object_mask", "object_contrast")
    background_pixels = as_boolean_mask(background_mask, "background_mask", "object_contrast")
    if background_pixels.shape != object_pixels.shape:
        raise InputError(
            f"object_contrast: background_mask has shape {background_pixels.shape} but "
            f"object_mask has {object_pixels.shape}; give both at the evaluation size."
        )
    valid_pixels = _valid_pixels(valid, object_pixels.shape, "object_contrast")
    map_pixels = normalised_map(saliency_map, object_pixels.shape).astype(np.float64)
    on_object = map_pixels[object_pixels & valid_pixels]
    on_background = map_pixels[background_pixels & valid_pixels]
    if not (on_object.size and on_background.size):
        return float("nan")
    return float(on_object.mean() - on_background.mean())


def object_iou(
    saliency_map: npt.ArrayLike,
    object_mask: npt.ArrayLike,
    valid: npt.ArrayLike | None = None,
) -> float:
    """IoU of a token's map with its object's mask, in the best-IoU sense.

    The same definition as the segmentation ``best_iou`` (max over 20 thresholds of the
    IoU of ``A > thr`` with the mask), so token IoUs compare with sequence IoUs.

    Args:
        saliency_map: a finite 2-D map of any size and scale.
        object_mask: the object's mask (boolean, or 0/1 values), the evaluation size.
        valid: pixels that count (boolean, the mask's shape); all when None.

    Returns:
        A value in ``[0, 1]``, NaN when undefined (see ``best_iou``).
    """
    return best_iou(saliency_map, object_mask, valid)


def auroc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Area under the ROC curve, as the Mann-Whitney statistic.

    The probability that a positive's score exceeds a negative's, ties counting one half,
    e.g. how ``delta^t`` separates object words (positive) from function words.

    Args:
        scores: one finite score per item.
        labels: one label per item, boolean or 0/1; True marks a positive.

    Returns:
        A value in ``[0, 1]``; 0.5 for scores that do not separate the classes.

    Raises:
        InputError: for non-finite scores, labels that are not boolean-like, lengths that
            differ, or a class without any item (the AUROC is then undefined).
    """
    score_values = np.asarray(scores, dtype=np.float64).reshape(-1)
    label_values = np.asarray(labels).reshape(-1)
    if score_values.size != label_values.size:
        raise InputError(
            f"auroc: got {score_values.size} scores but {label_values.size} labels; give "
            "one label per score."
        )
    if not np.isfinite(score_values).all():
        raise InputError("auroc: scores hold NaN or infinite values; pass finite scores.")
    if label_values.dtype != np.bool_ and not np.isin(label_values, (0, 1)).all():
        raise InputError("auroc: labels must be boolean or 0/1.")
    positive = label_values.astype(bool)
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    if n_positive == 0 or n_negative == 0:
        raise InputError(
            f"auroc: needs both classes, got {n_positive} positives and {n_negative} "
            "negatives. Add items of the missing class."
        )
    _, group, group_sizes = np.unique(score_values, return_inverse=True, return_counts=True)
    # Tied scores share the mean of their ranks, which is what makes a tie count 1/2.
    group_ends = np.cumsum(group_sizes)
    mean_ranks = group_ends - (group_sizes - 1) / 2
    positive_rank_sum = mean_ranks[group.reshape(-1)][positive].sum()
    u_statistic = positive_rank_sum - n_positive * (n_positive + 1) / 2
    return float(u_statistic / (n_positive * n_negative))


def uniform_pointing_chance(mask: npt.ArrayLike, valid: npt.ArrayLike | None = None) -> float:
    """The pointing-game hit rate of a uniformly random point: the mask's area fraction.

    Args:
        mask: the object's mask (boolean, or 0/1 values).
        valid: pixels that count (boolean, the mask's shape); all when None.

    Returns:
        The fraction of valid pixels inside the mask, in ``[0, 1]``.

    Raises:
        InputError: for malformed masks or no valid pixel.
    """
    object_pixels = as_boolean_mask(mask, "mask", "uniform_pointing_chance")
    valid_pixels = _valid_pixels(valid, object_pixels.shape, "uniform_pointing_chance")
    return float(object_pixels[valid_pixels].mean())


def _valid_pixels(
    valid: npt.ArrayLike | None, shape: tuple[int, ...], caller: str
) -> npt.NDArray[np.bool_]:
    """The valid mask (all True when None), checked against ``shape`` and non-empty."""
    if valid is None:
        return np.ones(shape, dtype=bool)
    valid_pixels = as_boolean_mask(valid, "valid", caller)
    if valid_pixels.shape != shape:
        raise InputError(
            f"{caller}: valid has shape {valid_pixels.shape} but the mask has {shape}; give "
            "one flag per mask pixel."
        )
    if not valid_pixels.any():
        raise InputError(f"{caller}: valid selects no pixel; nothing can be scored.")
    return valid_pixels
