"""Tests of token grounding: pointing game, object IoU, AUROC (docs/method.md §11)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from map_strategies import finite_values, map_shapes

from dexar_core.errors import DexarError, InputError
from dexar_core.metrics.grounding import (
    auroc,
    object_iou,
    pointing_game,
    uniform_pointing_chance,
)
from dexar_core.metrics.segmentation import best_iou


@st.composite
def scores_and_labels(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Scores from a small value set (so ties happen) with both classes present."""
    size = draw(st.integers(2, 30))
    scores = draw(arrays(np.float64, size, elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0, 3.5])))
    labels = draw(arrays(np.bool_, size))
    labels[0], labels[1] = True, False
    return scores, labels


def _mask(shape: tuple[int, int], *pixels: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for row, column in pixels:
        mask[row, column] = True
    return mask


def test_pointing_game_hits_when_the_maximum_is_inside() -> None:
    saliency = np.array([[0.1, 0.2, 0.0], [0.3, 0.9, 0.4], [0.0, 0.2, 0.1]])

    assert pointing_game(saliency, _mask((3, 3), (1, 1), (1, 2)))
    assert not pointing_game(saliency, _mask((3, 3), (0, 0), (2, 2)))


def test_pointing_game_ties_go_to_the_first_maximum_in_row_major_order() -> None:
    saliency = np.array([[1.0, 0.0], [0.0, 1.0]])

    assert pointing_game(saliency, _mask((2, 2), (0, 0)))
    assert not pointing_game(saliency, _mask((2, 2), (1, 1)))


def test_pointing_game_of_a_constant_map_points_top_left() -> None:
    assert pointing_game(np.full((2, 3), 4.0), _mask((2, 3), (0, 0)))
    assert not pointing_game(np.full((2, 3), 4.0), _mask((2, 3), (1, 2)))


def test_pointing_game_looks_only_at_valid_pixels() -> None:
    saliency = np.array([[5.0, 1.0], [0.0, 0.0]])
    valid = np.array([[False, True], [True, True]])

    assert pointing_game(saliency, _mask((2, 2), (0, 1)), valid)
    assert not pointing_game(saliency, _mask((2, 2), (0, 1)))


def test_pointing_game_upsamples_a_coarse_map() -> None:
    coarse = np.array([[0.0, 0.0], [0.0, 1.0]])
    object_mask = np.zeros((8, 8), dtype=bool)
    object_mask[4:, 4:] = True

    assert pointing_game(coarse, object_mask)
    assert not pointing_game(coarse, ~object_mask)


def test_pointing_game_refuses_an_absent_object() -> None:
    with pytest.raises(InputError, match="nothing to point at"):
        pointing_game(np.ones((2, 2)), np.zeros((2, 2), dtype=bool))


@given(mask=arrays(np.bool_, map_shapes))
def test_the_mask_itself_always_hits(mask: np.ndarray) -> None:
    mask.flat[-1] = True

    assert pointing_game(mask.astype(np.float32), mask)


def test_object_iou_is_the_best_iou() -> None:
    saliency = np.array([[0.0, 0.5], [1.0, 0.0]])
    object_mask = _mask((2, 2), (1, 0))

    assert object_iou(saliency, object_mask) == 1.0
    assert object_iou(saliency, ~object_mask) == best_iou(saliency, ~object_mask)


@given(
    saliency=arrays(np.float32, map_shapes, elements=finite_values),
    mask=arrays(np.bool_, map_shapes),
)
def test_object_iou_lies_in_zero_one(saliency: np.ndarray, mask: np.ndarray) -> None:
    mask.flat[0] = True

    assert 0 <= object_iou(saliency, mask) <= 1


def test_auroc_by_hand() -> None:
    # Pairs (positive, negative): (0.35, 0.1) win, (0.35, 0.4) lose, (0.8, *) win: 3/4.
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_auroc_counts_a_tie_as_one_half() -> None:
    assert auroc([1.0, 1.0], [True, False]) == 0.5
    assert auroc([2.0, 1.0, 1.0], [True, True, False]) == 0.75


def test_auroc_is_one_for_perfect_separation_and_zero_for_reversed() -> None:
    assert auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.9], [1, 1, 0]) == 0.0


@given(data=scores_and_labels())
def test_auroc_is_the_mann_whitney_pair_count(data: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = data
    positives, negatives = scores[labels], scores[~labels]
    differences = positives[:, None] - negatives[None, :]
    pair_count = ((differences > 0) + 0.5 * (differences == 0)).mean()

    assert auroc(scores, labels) == pytest.approx(pair_count)
    assert auroc(-scores, labels) == pytest.approx(1 - pair_count)


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0]])
def test_auroc_refuses_a_missing_class(labels: list[int]) -> None:
    with pytest.raises(DexarError, match="needs both classes"):
        auroc([0.1, 0.2, 0.3], labels)


def test_auroc_refuses_nan_scores() -> None:
    with pytest.raises(DexarError, match="NaN"):
        auroc([0.1, np.nan], [1, 0])


def test_auroc_refuses_lengths_that_differ() -> None:
    with pytest.raises(InputError, match="one label per score"):
        auroc([0.1, 0.2, 0.3], [1, 0])


def test_auroc_refuses_labels_that_are_not_binary() -> None:
    with pytest.raises(InputError, match="boolean or 0/1"):
        auroc([0.1, 0.2], [1, 2])


def test_uniform_pointing_chance_is_the_mask_fraction() -> None:
    mask = _mask((2, 4), (0, 0), (1, 3))

    assert uniform_pointing_chance(mask) == 0.25
    assert uniform_pointing_chance(mask, valid=_mask((2, 4), (0, 0), (0, 1))) == 0.5


def test_uniform_pointing_chance_refuses_an_empty_valid_mask() -> None:
    with pytest.raises(InputError, match="no pixel"):
        uniform_pointing_chance(np.ones((2, 2)), valid=np.zeros((2, 2), dtype=bool))
