"""Batched perturbation scores equal the unbatched ones, on every embedded model.

The perturbed copies of one item go through ``unit_scores`` together (the clean image
once, then every curve's levels, several sets a forward); each score must equal the
one the same set gets alone, through a full ``prepare`` and a forward of its own.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dexar_core.api import explain, load
from dexar_core.datasets.benchmark import as_benchmark_item
from dexar_core.evaluation.perturbation import (
    explained_units,
    perturbation_scores,
    unit_score_curve,
    unit_score_curves,
)
from dexar_core.evaluation.records import PERTURBATION_ORDERS
from dexar_core.evaluation.run import explained_prompt, open_dataset
from dexar_core.metrics import random_smooth_map
from dexar_core.metrics.perturbation import answer_perplexities, level_images

torch.set_num_threads(1)

MODELS = ("shapes-llava", "shapes-qwen2vl", "shapes-blip2", "shapes-florence2", "shapes-clip")
FRACTIONS = (0.0, 0.3, 0.6)
RTOL = 1e-5  # float32: a batch changes how the kernels block their sums, nothing else
# how the curves fill the removed patches by default
LEVELS = {"replacement": "mean", "blur_radius": 8.0}


@pytest.fixture(scope="module")
def item():
    return as_benchmark_item(open_dataset("shapes")[1], 1)


@pytest.mark.parametrize("name", MODELS)
def test_batched_curves_equal_each_set_scored_alone(name, item):
    loaded = load(name)
    prompt = explained_prompt(item, loaded.adapter.units)
    explanation = explain(loaded, item.image, prompt, max_new_tokens=8)
    units = explained_units(explanation)
    chance = [random_smooth_map(grid.shape, 7) for grid in explanation.grids]
    rankings = [
        (maps, order)
        for maps in (list(explanation.sequence_maps), chance)
        for order in PERTURBATION_ORDERS
    ]
    curves = unit_score_curves(
        loaded, item.image, prompt, units, rankings, explanation.grids, fractions=FRACTIONS
    )
    for (maps, order), curve in zip(rankings, curves, strict=True):
        alone = unit_score_curve(
            loaded,
            item.image,
            prompt,
            units,
            maps,
            explanation.grids,
            order=order,
            fractions=FRACTIONS,
        )
        assert curve.fractions == alone.fractions and curve.order == order
        np.testing.assert_allclose(curve.scores, alone.scores, rtol=RTOL)
        # ... and equal every set scored in a call of its own, the one-by-one path
        clean = [item.image.convert("RGB")]
        sets = level_images(
            loaded, clean, maps, explanation.grids, FRACTIONS, order=order, **LEVELS
        )
        one_by_one = [loaded.adapter.unit_scores(loaded, [s], prompt, units)[0] for s in sets]
        np.testing.assert_allclose(curve.scores, one_by_one, rtol=RTOL)
        np.testing.assert_allclose(curve.normalised[0], 1.0, rtol=RTOL)


def test_batches_of_any_size_give_the_same_perplexities(item):
    loaded = load("shapes-llava")
    explanation = explain(loaded, item.image, item.question, max_new_tokens=8)
    clean = item.image.convert("RGB")
    sets = [[clean], [clean.rotate(90)], [clean.transpose(0)], [clean.resize((80, 48))]]
    ids = explanation.token_ids
    alone = [answer_perplexities(loaded, [s], item.question, ids)[0] for s in sets]
    for batch_size in (1, 2, 4):
        batched = answer_perplexities(loaded, sets, item.question, ids, batch_size=batch_size)
        np.testing.assert_allclose(batched, alone, rtol=RTOL)
    assert len(set(np.round(alone, 6))) > 1  # the sets really differ


def test_evaluation_scores_match_the_curves_one_at_a_time(item):
    loaded = load("shapes-qwen2vl")
    explanation = explain(loaded, item.image, item.question, max_new_tokens=8)
    scores = perturbation_scores(loaded, item, explanation, seed=0)
    units = explained_units(explanation)
    for order in PERTURBATION_ORDERS:
        curve = unit_score_curve(
            loaded,
            item.image,
            explanation.prompt,
            units,
            list(explanation.sequence_maps),
            explanation.grids,
            order=order,
        )
        np.testing.assert_allclose(scores["perturbation"]["method"][order], curve.auc, rtol=RTOL)
        np.testing.assert_allclose(
            scores["perturbation_curves"][order], curve.normalised, rtol=RTOL
        )
