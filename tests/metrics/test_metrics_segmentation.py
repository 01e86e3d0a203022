"""Tests of the segmentation scores and their chance lines (docs/method.md §11)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from map_strategies import finite_values, map_shapes

from dexar_core.errors import InputError
from dexar_core.heatmap import upsample
from dexar_core.metrics.segmentation import (
    BEST_IOU_THRESHOLDS,
    best_iou,
    chance_scores,
    epg,
    random_smooth_map,
    segmentation_scores,
    snr,
    soft_iou,
    uniform_map,
)


@st.composite
def nonempty_masks(draw: st.DrawFn) -> np.ndarray:
    """A boolean mask with at least one object pixel."""
    mask = draw(arrays(np.bool_, draw(map_shapes)))
    mask.flat[draw(st.integers(0, mask.size - 1))] = True
    return mask


@st.composite
def maps_and_masks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A map of its own size (so upsampling is exercised) and a non-empty mask."""
    saliency_map = draw(arrays(np.float32, draw(map_shapes), elements=finite_values))
    return saliency_map, draw(nonempty_masks())


# A = [[0, 0.5], [1, 0]] is already min-max normalised; M is the top row.
MAP = np.array([[0.0, 0.5], [1.0, 0.0]])
TOP_ROW = np.array([[True, True], [False, False]])


def test_thresholds_are_twenty_from_zero() -> None:
    np.testing.assert_allclose(BEST_IOU_THRESHOLDS, np.arange(20) / 20)


def test_soft_iou_by_hand() -> None:
    # sum(A*M) = 0.5, sum A = 1.5, sum M = 2: 0.5 / (1.5 + 2 - 0.5)
    assert soft_iou(MAP, TOP_ROW) == pytest.approx(1 / 6)


def test_epg_by_hand() -> None:
    assert epg(MAP, TOP_ROW) == pytest.approx(1 / 3)


def test_snr_by_hand() -> None:
    # mean inside 0.25, mean outside 0.5
    assert snr(MAP, TOP_ROW) == pytest.approx(10 * math.log10(0.5))


def test_best_iou_by_hand() -> None:
    # thr < 0.5: A > thr = {(0,1), (1,0)}, IoU 1/3; thr >= 0.5: {(1,0)}, IoU 0.
    assert best_iou(MAP, TOP_ROW) == pytest.approx(1 / 3)


def test_best_iou_binarises_strictly_above_the_threshold() -> None:
    # With map >= 0 at thr = 0 every pixel would be foreground and IoU would be 3/4.
    corner = np.array([[1.0, 0.0], [0.0, 0.0]])
    mask = np.array([[True, True], [True, False]])

    assert best_iou(corner, mask) == pytest.approx(1 / 3)


def test_scores_normalise_the_map_first() -> None:
    shifted = 7 + 3 * MAP

    assert segmentation_scores(shifted, TOP_ROW) == pytest.approx(segmentation_scores(MAP, TOP_ROW))


def test_segmentation_scores_agree_with_the_single_scores() -> None:
    scores = segmentation_scores(MAP, TOP_ROW)

    assert scores == pytest.approx(
        {
            "soft_iou": soft_iou(MAP, TOP_ROW),
            "best_iou": best_iou(MAP, TOP_ROW),
            "epg": epg(MAP, TOP_ROW),
            "snr": snr(MAP, TOP_ROW),
        }
    )


def test_a_coarse_map_is_upsampled_to_the_mask() -> None:
    coarse = np.array([[1.0, 0.0], [0.0, 0.0]])
    mask = np.zeros((8, 8), dtype=bool)
    mask[:4, :4] = True

    coarse_epg = epg(coarse, mask)

    assert coarse_epg == pytest.approx(epg(upsample(coarse, (8, 8)), mask))
    assert coarse_epg > 0.7 > mask.mean()


def test_void_pixels_leave_every_sum() -> None:
    saliency = np.array([[1.0, 0.5], [0.0, 0.0]])
    mask = np.array([[True, False], [False, False]])
    valid = np.array([[True, False], [True, True]])

    assert segmentation_scores(saliency, mask) == pytest.approx(
        {"soft_iou": 2 / 3, "best_iou": 1.0, "epg": 2 / 3, "snr": 10 * math.log10(1 / (0.5 / 3))}
    )
    assert segmentation_scores(saliency, mask, valid) == pytest.approx(
        {"soft_iou": 1.0, "best_iou": 1.0, "epg": 1.0, "snr": math.inf}
    )


def test_mask_accepts_zero_one_integers() -> None:
    assert soft_iou(MAP, TOP_ROW.astype(np.uint8)) == soft_iou(MAP, TOP_ROW)


def test_a_voc_label_image_is_refused_with_the_recipe() -> None:
    label = np.array([[0, 15], [255, 0]], dtype=np.uint8)

    with pytest.raises(InputError, match=r"label != 255"):
        epg(MAP, label)


def test_shapes_must_agree_for_valid() -> None:
    with pytest.raises(InputError, match="valid has shape"):
        epg(MAP, TOP_ROW, np.ones((3, 3), dtype=bool))


def test_a_non_finite_map_is_refused() -> None:
    with pytest.raises(InputError, match="NaN"):
        soft_iou(np.array([[np.nan, 1.0], [0.0, 0.0]]), TOP_ROW)


def test_snr_is_plus_infinity_when_the_map_is_zero_outside() -> None:
    assert snr(np.array([[1.0, 1.0], [0.0, 0.0]]), TOP_ROW) == math.inf


def test_snr_is_minus_infinity_when_the_map_is_zero_inside() -> None:
    assert snr(np.array([[0.0, 0.0], [1.0, 0.0]]), TOP_ROW) == -math.inf


def test_degenerate_masks_give_nan_or_zero_never_an_error() -> None:
    empty = np.zeros((2, 2), dtype=bool)
    full = np.ones((2, 2), dtype=bool)

    empty_scores = segmentation_scores(MAP, empty)
    assert empty_scores["soft_iou"] == 0 and empty_scores["epg"] == 0
    assert empty_scores["best_iou"] == 0
    assert math.isnan(empty_scores["snr"])
    assert math.isnan(snr(MAP, full))
    assert epg(MAP, full) == 1


def test_a_constant_map_scores_as_the_uniform_map() -> None:
    assert segmentation_scores(np.full((3, 3), -2.5), TOP_ROW) == segmentation_scores(
        uniform_map((2, 2)), TOP_ROW
    )


@given(data=maps_and_masks())
def test_every_score_lies_in_its_range(data: tuple[np.ndarray, np.ndarray]) -> None:
    saliency, mask = data

    scores = segmentation_scores(saliency, mask)

    for name in ("soft_iou", "best_iou", "epg"):
        assert 0 <= scores[name] <= 1, name
    if not mask.all():
        assert not math.isnan(scores["snr"])


@given(mask=nonempty_masks())
def test_the_mask_itself_scores_one(mask: np.ndarray) -> None:
    scores = segmentation_scores(mask.astype(np.float32), mask)

    assert scores["soft_iou"] == pytest.approx(1)
    assert scores["best_iou"] == pytest.approx(1)
    assert scores["epg"] == pytest.approx(1)


@given(mask=nonempty_masks(), value=finite_values)
def test_uniform_map_scores_the_mask_fraction(mask: np.ndarray, value: float) -> None:
    for constant_map in (uniform_map(mask.shape), np.full(mask.shape, value)):
        scores = segmentation_scores(constant_map, mask)

        assert scores["epg"] == pytest.approx(mask.mean())
        assert scores["soft_iou"] == pytest.approx(mask.mean())
        assert scores["best_iou"] == pytest.approx(mask.mean())
        if not mask.all():
            assert scores["snr"] == pytest.approx(0)


@given(data=maps_and_masks(), exponent=st.integers(-10, 10))
def test_scores_ignore_a_power_of_two_scale_exactly(
    data: tuple[np.ndarray, np.ndarray], exponent: int
) -> None:
    saliency, mask = data

    scaled = segmentation_scores(saliency * np.float32(2.0**exponent), mask)

    np.testing.assert_equal(scaled, segmentation_scores(saliency, mask))


@given(data=maps_and_masks(), scale=st.floats(1e-3, 1e3))
def test_continuous_scores_ignore_any_positive_scale(
    data: tuple[np.ndarray, np.ndarray], scale: float
) -> None:
    saliency, mask = data

    scaled = segmentation_scores(saliency.astype(np.float64) * scale, mask)
    plain = segmentation_scores(saliency, mask)

    for name in ("soft_iou", "epg", "snr"):
        np.testing.assert_allclose(scaled[name], plain[name], rtol=1e-4, atol=1e-6)


def test_random_smooth_map_is_a_unit_map_fixed_by_its_seed() -> None:
    first = random_smooth_map((30, 40), seed=3)

    assert first.shape == (30, 40)
    assert first.min() == 0 and first.max() == 1
    np.testing.assert_array_equal(first, random_smooth_map((30, 40), seed=3))
    assert not np.array_equal(first, random_smooth_map((30, 40), seed=4))


def test_random_smooth_map_is_smooth() -> None:
    smooth = random_smooth_map((96, 96), seed=0)

    assert np.abs(np.diff(smooth, axis=1)).max() < 0.5


def test_chance_scores_hold_both_lines() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:10, 5:15] = True

    chance = chance_scores(mask, seed=0)

    assert set(chance) == {"uniform", "random_smooth"}
    assert chance["uniform"] == pytest.approx(
        {"soft_iou": 0.125, "best_iou": 0.125, "epg": 0.125, "snr": 0.0}
    )
    assert chance["random_smooth"] == segmentation_scores(random_smooth_map((20, 20), 0), mask)


def test_chance_scores_respect_void_pixels() -> None:
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, :] = True
    valid = np.ones((4, 4), dtype=bool)
    valid[2:, :] = False

    assert chance_scores(mask, seed=0, valid=valid)["uniform"]["epg"] == pytest.approx(0.5)
