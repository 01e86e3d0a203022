"""Perturbation scores of one benchmark item: perplexity for generative models, similarity
for contrastive ones.

Both rank the patches by the explanation's sequence map (and, for the chance line, by a
random smooth map seeded as the segmentation chance map is), remove them in pixel space
of the original image (:func:`dexar_core.metrics.perturbation.perturbed_images`: the
processor's normalisation mean or a blur) at r = 0, 0.1, ..., 0.9, and integrate the
normalised curve over r (trapezoids):

- generative models: the answer's teacher-forced perplexity, ``nPPL_r = PPL_r / PPL_0``
  (:func:`dexar_core.metrics.perturbation.perturbation_curve`); positive AUC higher is
  better, negative AUC lower is better;
- contrastive models (an adapter with ``similarities``, e.g. open_clip): the image-text
  cosine similarity with the explained prompt, ``nSim_r = sim_r / sim_0``
  (:func:`similarity_curve`); a good map makes the similarity fall fast when its top
  patches go, so here the positive AUC is *lower* is better and the negative AUC
  *higher* is better. ``nSim`` is undefined (NaN, left out of the means) when the clean
  similarity is not positive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
from PIL import Image

from dexar_core.errors import InputError
from dexar_core.evaluation.records import PERTURBATION_ORDERS
from dexar_core.metrics import random_smooth_map
from dexar_core.metrics.perturbation import (
    FRACTIONS,
    checked_fractions,
    level_images,
    trapezoid_auc,
)
from dexar_core.values import Grid

if TYPE_CHECKING:
    from dexar_core.datasets.benchmark import BenchmarkItem
    from dexar_core.explanation import Explanation
    from dexar_core.records import LoadedModel

__all__ = [
    "SimilarityCurve",
    "perturbation_scores",
    "similarity_curve",
    "similarity_perturbation_scores",
]


def chance_seed(seed: int, index: int) -> int:
    """Seed of the random smooth chance map of item ``index`` under the run's ``seed``."""
    return seed * 1_000_003 + index


@attrs.frozen(kw_only=True)
class SimilarityCurve:
    """Normalised image-text similarity of one prompt as patches are removed.

    Attributes:
        order: ``"positive"`` (most relevant first) or ``"negative"`` (least first).
        replacement: ``"mean"`` or ``"blur"``.
        fractions: the fractions r of patches removed.
        similarities: the cosine similarity at each fraction (the clean one at r = 0).
        clean_similarity: the similarity on the unperturbed image.
        normalised: ``sim_r / sim_0`` (exactly 1 at r = 0; NaN when ``sim_0 <= 0``).
        auc: trapezoid area under ``normalised`` over ``fractions``.
    """

    order: str
    replacement: str
    fractions: tuple[float, ...]
    similarities: tuple[float, ...]
    clean_similarity: float
    normalised: tuple[float, ...]
    auc: float


def similarity_curve(
    loaded: LoadedModel,
    image: Image.Image,
    prompt: str,
    maps: Sequence[Any],
    grids: Sequence[Grid],
    *,
    order: str = "positive",
    replacement: str = "mean",
    fractions: Sequence[float] = FRACTIONS,
    blur_radius: float = 8.0,
) -> SimilarityCurve:
    """The normalised-similarity curve of one prompt under one patch order.

    Args:
        loaded: a contrastive model whose adapter has ``similarities(loaded, images,
            prompt)`` (open_clip).
        image: the clean image the prompt was explained on.
        prompt: the explained text.
        maps: one ``[h, w]`` relevance map per grid (``Explanation.sequence_maps``).
        grids: their grids (``Explanation.grids``).
        order: ``"positive"`` or ``"negative"``.
        replacement: ``"mean"`` (the processor's normalisation mean) or ``"blur"``.
        fractions: increasing fractions in [0, 1), starting at 0.
        blur_radius: Gaussian radius (pixels) of ``"blur"``.
    """
    if order not in PERTURBATION_ORDERS:
        raise InputError(f"order must be one of {PERTURBATION_ORDERS}, got {order!r}.")
    levels = checked_fractions(fractions)
    similarities_of = getattr(loaded.adapter, "similarities", None)
    if similarities_of is None:
        raise InputError(
            f"similarity_curve: {loaded.model_id!r} is not a contrastive model (its adapter "
            "has no similarities()); use dexar_core.metrics.perturbation_curve."
        )
    clean = image.convert("RGB")
    perturbed = level_images(
        loaded,
        [clean],
        maps,
        grids,
        levels[1:],
        order=order,
        replacement=replacement,
        blur_radius=blur_radius,
    )
    # r = 0 removes nothing: it is the clean image
    images = [clean, *(copies[0] for copies in perturbed)]
    similarities = [float(value) for value in similarities_of(loaded, images, prompt)]
    clean_similarity = similarities[0]
    if clean_similarity > 0:
        normalised = [value / clean_similarity for value in similarities]
    else:
        normalised = [float("nan")] * len(similarities)
    return SimilarityCurve(
        order=order,
        replacement=replacement,
        fractions=tuple(levels),
        similarities=tuple(similarities),
        clean_similarity=clean_similarity,
        normalised=tuple(normalised),
        auc=trapezoid_auc(levels, normalised),
    )


def _chance_maps(item: BenchmarkItem, explanation: Explanation, seed: int) -> list[np.ndarray]:
    return [
        random_smooth_map(grid.shape, chance_seed(seed, item.index) + number)
        for number, grid in enumerate(explanation.grids)
    ]


def _scored_lines(
    item: BenchmarkItem,
    explanation: Explanation,
    seed: int,
    curve_of: Callable[[list[np.ndarray], str], Any],
) -> dict[str, Any]:
    """Both orders' AUCs of the sequence map and of the chance map, one curve each.

    ``curve_of(maps, order)`` returns a curve with ``auc`` and ``normalised``; the
    method's curves are kept, the chance map's only as AUCs.
    """
    aucs: dict[str, dict[str, float]] = {"method": {}, "random_smooth": {}}
    curves: dict[str, tuple[float, ...]] = {}
    lines = (
        ("method", list(explanation.sequence_maps)),
        ("random_smooth", _chance_maps(item, explanation, seed)),
    )
    for line, maps in lines:
        for order in PERTURBATION_ORDERS:
            curve = curve_of([np.asarray(m) for m in maps], order)
            aucs[line][order] = curve.auc
            if line == "method":
                curves[order] = curve.normalised
    return {"perturbation": aucs, "perturbation_curves": curves}


def similarity_perturbation_scores(
    loaded: LoadedModel,
    item: BenchmarkItem,
    explanation: Explanation,
    seed: int,
    replacement: str = "mean",
) -> dict[str, Any]:
    """The positive and negative normalised-similarity AUCs of the map and of chance.

    Returns:
        The :class:`ItemResult` fields ``perturbation`` (``{"method" | "random_smooth":
        {order: auc}}``) and ``perturbation_curves`` (the method's ``nSim_r``).
    """
    prompt = explanation.tokens[0]

    def curve_of(maps: list[np.ndarray], order: str) -> Any:
        return similarity_curve(
            loaded,
            item.image,
            prompt,
            maps,
            explanation.grids,
            order=order,
            replacement=replacement,
        )

    return _scored_lines(item, explanation, seed, curve_of)


def perturbation_scores(
    loaded: LoadedModel,
    item: BenchmarkItem,
    explanation: Explanation,
    seed: int,
    replacement: str = "mean",
) -> dict[str, Any]:
    """The positive and negative nPPL AUCs of the sequence map and of the chance map.

    The chance line ranks the patches by a random smooth map on each grid, seeded as the
    segmentation chance map is (:func:`chance_seed`).

    Returns:
        ``{"perturbation": {"method" | "random_smooth": {order: auc}},
        "perturbation_curves": {order: nPPL per fraction}}``, the fields of
        :class:`ItemResult` they fill.
    """
    from dexar_core.metrics.perturbation import perturbation_curve

    def curve_of(maps: list[np.ndarray], order: str) -> Any:
        return perturbation_curve(
            loaded,
            item.image,
            explanation.prompt,
            explanation.token_ids,
            maps,
            explanation.grids,
            order=order,
            replacement=replacement,
        )

    return _scored_lines(item, explanation, seed, curve_of)
