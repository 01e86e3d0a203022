"""Perturbation scores of one benchmark item, for every kind of model through one interface.

Both rank the patches by the explanation's sequence map (and, for the chance line, by a
random smooth map seeded as the segmentation chance map is), remove them in pixel space
of the original image (:func:`dexar_core.metrics.perturbation.perturbed_images`: the
processor's normalisation mean or a blur) at r = 0, 0.1, ..., 0.9, score the explained
units on each perturbed image with the adapter's ``unit_scores``, normalise by the
clean score and integrate the curve over r (trapezoids):

- generative models (``perturbation_measure`` ``"perplexity"``): the answer's
  teacher-forced perplexity, ``nPPL_r = PPL_r / PPL_0``; positive AUC higher is
  better, negative AUC lower is better;
- contrastive models (``"similarity"``, e.g. open_clip): the image-text cosine
  similarity of the explained prompt(s), ``nSim_r = sim_r / sim_0``; a good map makes
  the similarity fall fast when its top patches go, so here the positive AUC is
  *lower* is better and the negative AUC *higher* is better.

Beside each AUC, the area under the log-ratio curve ``ln(score_r / score_0)``
(:func:`dexar_core.metrics.perturbation.curve_numbers`), which is kept for perplexities
only: there it is the mean per-token NLL increase, and a few items whose perplexity
explodes cannot dominate its mean; a similarity crosses 0 once the objects are gone,
where no log-ratio exists (and ``sim_r / sim_0`` does not explode).

The normalised curve is undefined (NaN, left out of the means) when the clean score is
not positive.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    curve_numbers,
    level_images,
)
from dexar_core.records import ExplainedUnits
from dexar_core.values import Grid

if TYPE_CHECKING:
    from dexar_core.datasets.benchmark import BenchmarkItem
    from dexar_core.explanation import Explanation
    from dexar_core.records import LoadedModel

__all__ = ["UnitScoreCurve", "perturbation_scores", "unit_score_curve", "unit_score_curves"]


def chance_seed(seed: int, index: int) -> int:
    """Seed of the random smooth chance map of item ``index`` under the run's ``seed``."""
    return seed * 1_000_003 + index


@attrs.frozen(kw_only=True)
class UnitScoreCurve:
    """The normalised score of the explained units as patches are removed.

    Attributes:
        measure: what was scored (``ModelAdapter.perturbation_measure``):
            ``"perplexity"`` or ``"similarity"``.
        order: ``"positive"`` (most relevant first) or ``"negative"`` (least first).
        replacement: ``"mean"`` or ``"blur"``.
        fractions: the fractions r of patches removed.
        scores: the score at each fraction (the clean one at r = 0).
        clean_score: the score on the unperturbed image.
        normalised: ``score_r / score_0`` (exactly 1 at r = 0; NaN when ``score_0 <= 0``).
        auc: trapezoid area under ``normalised`` over ``fractions``.
        log_ratio: ``ln(score_r / score_0)`` (exactly 0 at r = 0; NaN where a score is
            not positive).
        log_ratio_area: trapezoid area under ``log_ratio`` over ``fractions``.
    """

    measure: str
    order: str
    replacement: str
    fractions: tuple[float, ...]
    scores: tuple[float, ...]
    clean_score: float
    normalised: tuple[float, ...]
    auc: float
    log_ratio: tuple[float, ...]
    log_ratio_area: float


def explained_units(explanation: Explanation) -> ExplainedUnits:
    """The units an explanation explained, as the adapter's ``unit_scores`` takes them."""
    return ExplainedUnits(
        kind=explanation.units,
        ids=explanation.token_ids,
        labels=explanation.tokens,
        answer=explanation.answer,
        generated=explanation.generated,
    )


def unit_score_curve(
    loaded: LoadedModel,
    image: Image.Image,
    prompt: str,
    units: ExplainedUnits,
    maps: Sequence[Any],
    grids: Sequence[Grid],
    *,
    order: str = "positive",
    replacement: str = "mean",
    fractions: Sequence[float] = FRACTIONS,
    blur_radius: float = 8.0,
) -> UnitScoreCurve:
    """The normalised-score curve of the explained units under one patch order.

    Args:
        loaded: the model that was explained.
        image: the clean image the units were explained on.
        prompt: the prompt, as given to ``explain``.
        units: the explained units (:func:`explained_units` of the explanation).
        maps: one ``[h, w]`` relevance map per grid (``Explanation.sequence_maps``).
        grids: their grids (``Explanation.grids``).
        order: ``"positive"`` or ``"negative"``.
        replacement: ``"mean"`` (the processor's normalisation mean) or ``"blur"``.
        fractions: increasing fractions in [0, 1), starting at 0.
        blur_radius: Gaussian radius (pixels) of ``"blur"``.
    """
    (curve,) = unit_score_curves(
        loaded,
        image,
        prompt,
        units,
        [(maps, order)],
        grids,
        replacement=replacement,
        fractions=fractions,
        blur_radius=blur_radius,
    )
    return curve


def unit_score_curves(
    loaded: LoadedModel,
    image: Image.Image,
    prompt: str,
    units: ExplainedUnits,
    rankings: Sequence[tuple[Sequence[Any], str]],
    grids: Sequence[Grid],
    *,
    replacement: str = "mean",
    fractions: Sequence[float] = FRACTIONS,
    blur_radius: float = 8.0,
) -> list[UnitScoreCurve]:
    """Several curves of one item, their perturbed images scored in one ``unit_scores`` call.

    Each of ``rankings`` is ``(maps, order)`` as :func:`unit_score_curve` takes them, and
    gives the curve it would. Every curve starts at r = 0, which removes nothing: the
    clean image is scored once for all of them, and the adapter batches the rest
    (perplexity: ``PERPLEXITY_BATCH`` sets a forward; similarity: 16 images).
    """
    levels = checked_fractions(fractions)
    clean = image.convert("RGB")
    image_sets: list[list[Image.Image]] = [[clean]]
    for maps, order in rankings:
        if order not in PERTURBATION_ORDERS:
            raise InputError(f"order must be one of {PERTURBATION_ORDERS}, got {order!r}.")
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
        image_sets.extend(perturbed)
    scores = [
        float(value) for value in loaded.adapter.unit_scores(loaded, image_sets, prompt, units)
    ]
    clean_score, perturbed_scores = scores[0], scores[1:]
    steps = len(levels) - 1
    curves = []
    for number, (_, order) in enumerate(rankings):
        curve_scores = [clean_score, *perturbed_scores[number * steps : (number + 1) * steps]]
        curves.append(
            UnitScoreCurve(
                measure=loaded.adapter.perturbation_measure,
                order=order,
                replacement=replacement,
                fractions=tuple(levels),
                scores=tuple(curve_scores),
                clean_score=clean_score,
                **curve_numbers(levels, curve_scores, clean_score),
            )
        )
    return curves


def _chance_maps(item: BenchmarkItem, explanation: Explanation, seed: int) -> list[np.ndarray]:
    return [
        random_smooth_map(grid.shape, chance_seed(seed, item.index) + number)
        for number, grid in enumerate(explanation.grids)
    ]


def perturbation_scores(
    loaded: LoadedModel,
    item: BenchmarkItem,
    explanation: Explanation,
    seed: int,
    replacement: str = "mean",
) -> dict[str, Any]:
    """The positive and negative AUCs and log-ratio areas of the sequence map and of chance.

    The chance line ranks the patches by a random smooth map on each grid, seeded as the
    segmentation chance map is (:func:`chance_seed`). The four curves' perturbed images
    are scored together (:func:`unit_score_curves`). The log-ratio areas are kept for
    the ``perplexity`` measure only (see the module's note).

    Returns:
        ``{"perturbation": {"method" | "random_smooth": {order: auc}},
        "perturbation_log_ratio": {"method" | "random_smooth": {order: area}} (empty
        for a similarity), "perturbation_curves": {order: normalised score per
        fraction}}``, the fields of :class:`ItemResult` they fill.
    """
    lines = (
        ("method", [np.asarray(m) for m in explanation.sequence_maps]),
        ("random_smooth", _chance_maps(item, explanation, seed)),
    )
    drawn = [(line, maps, order) for line, maps in lines for order in PERTURBATION_ORDERS]
    curves = unit_score_curves(
        loaded,
        item.image,
        explanation.prompt,
        explained_units(explanation),
        [(maps, order) for _, maps, order in drawn],
        explanation.grids,
        replacement=replacement,
    )
    aucs: dict[str, dict[str, float]] = {"method": {}, "random_smooth": {}}
    areas: dict[str, dict[str, float]] = {"method": {}, "random_smooth": {}}
    kept: dict[str, tuple[float, ...]] = {}
    for (line, _, order), curve in zip(drawn, curves, strict=True):
        aucs[line][order] = curve.auc
        areas[line][order] = curve.log_ratio_area
        if line == "method":  # the chance map's curves are kept only as areas
            kept[order] = curve.normalised
    perplexity = loaded.adapter.perturbation_measure == "perplexity"
    return {
        "perturbation": aucs,
        "perturbation_log_ratio": areas if perplexity else {},
        "perturbation_curves": kept,
    }
