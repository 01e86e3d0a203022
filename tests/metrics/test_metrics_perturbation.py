"""Perturbation curves with normalised perplexity and its log-ratio (docs/method.md §11)."""

from __future__ import annotations

import numpy as np
import pytest
from llava_fixtures import noise_image, tiny_llava
from PIL import Image

from dexar_core.errors import InputError
from dexar_core.metrics.perturbation import (
    FRACTIONS,
    curve_numbers,
    mask_to_grid,
    patch_boxes,
    patch_ranking,
    perturbation_aucs,
    perturbation_curve,
    perturbed_images,
    replacement_color,
    seen_cell_pixels,
    trapezoid_auc,
)
from dexar_core.values import Grid

GRID = Grid(name="image 0", height=2, width=3, positions=range(6), pixel_box=(0, 0, 31, 20))


def test_patch_boxes_tile_the_pixel_box_without_gaps_or_overlaps():
    boxes = patch_boxes(GRID)
    assert boxes.shape == (6, 4)
    cover = np.zeros((20, 31), int)
    for left, top, right, bottom in boxes:
        cover[top:bottom, left:right] += 1
    assert (cover == 1).all()
    np.testing.assert_array_equal(boxes[4], [10, 10, 21, 20])  # row 1, column 1


def test_mean_replacement_fills_exactly_the_chosen_cells():
    image = noise_image(0, size=(31, 20))
    (out,) = perturbed_images([image], [GRID], [(0, 4)], replacement="mean", color=(1, 2, 3))
    before, after = np.asarray(image), np.asarray(out)
    assert (after[10:20, 10:21] == [1, 2, 3]).all()
    outside = np.ones((20, 31), bool)
    outside[10:20, 10:21] = False
    np.testing.assert_array_equal(after[outside], before[outside])
    np.testing.assert_array_equal(np.asarray(image), before)  # the original is untouched


def test_blur_replacement_changes_only_the_chosen_cells():
    image = noise_image(3, size=(31, 20))
    (out,) = perturbed_images([image], [GRID], [(0, 0)], replacement="blur", blur_radius=3)
    before, after = np.asarray(image), np.asarray(out)
    assert not np.array_equal(after[0:10, 0:10], before[0:10, 0:10])
    np.testing.assert_array_equal(after[10:], before[10:])
    with pytest.raises(InputError, match="replacement"):
        perturbed_images([image], [GRID], [], replacement="noise")


CROPPED = Grid(name="image 0", height=2, width=2, positions=range(4), pixel_box=(10, 0, 30, 20))
"""A centre crop: the model saw x in [10, 30) of a 40 x 20 image, not the side bands."""


def with_bands(image: Image.Image, seed: int) -> Image.Image:
    """``image`` with its side bands (outside :data:`CROPPED`) replaced by other noise."""
    pixels = np.asarray(image).copy()
    other = np.asarray(noise_image(seed, size=image.size))
    pixels[:, :10], pixels[:, 30:] = other[:, :10], other[:, 30:]
    return Image.fromarray(pixels)


@pytest.mark.parametrize("replacement", ["mean", "blur"])
def test_cropped_off_pixels_are_neither_changed_nor_read(replacement):
    image = noise_image(4, size=(40, 20))
    cells = [(0, 0), (0, 3)]  # the top-left and bottom-right cells, against the bands
    (out,) = perturbed_images([image], [CROPPED], cells, replacement=replacement, blur_radius=6)
    before, after = np.asarray(image), np.asarray(out)
    np.testing.assert_array_equal(after[:, :10], before[:, :10])
    np.testing.assert_array_equal(after[:, 30:], before[:, 30:])
    assert not np.array_equal(after[:10, 10:20], before[:10, 10:20])
    # other bands give the same seen pixels: a blur takes nothing from outside the crop
    (other,) = perturbed_images(
        [with_bands(image, 9)], [CROPPED], cells, replacement=replacement, blur_radius=6
    )
    np.testing.assert_array_equal(np.asarray(other)[:, 10:30], after[:, 10:30])


def test_cells_without_a_seen_pixel_are_not_counted():
    # 8 columns over 5 pixels: three cells round to no width; off the image, none is seen
    narrow = Grid(name="image 0", height=1, width=8, positions=range(8), pixel_box=(0, 0, 5, 4))
    (counts,) = seen_cell_pixels([noise_image(0, size=(5, 4))], [narrow])
    assert counts.sum() == 5 * 4 and (counts == 0).sum() == 3
    outside = Grid(name="image 0", height=1, width=2, positions=range(2), pixel_box=(0, 0, 8, 4))
    np.testing.assert_array_equal(
        seen_cell_pixels([noise_image(0, size=(4, 4))], [outside])[0], [16, 0]
    )


def test_ranking_is_most_relevant_first_with_stable_ties():
    ranking = patch_ranking([np.array([[0.1, 0.9, 0.1], [0.5, 0.0, 0.5]])], [GRID])
    assert ranking == [(0, 1), (0, 3), (0, 5), (0, 0), (0, 2), (0, 4)]
    with pytest.raises(InputError, match="shape"):
        patch_ranking([np.zeros((3, 2))], [GRID])
    with pytest.raises(InputError, match="one map per grid"):
        patch_ranking([], [GRID])


def test_trapezoid_auc_by_hand():
    assert trapezoid_auc([0, 0.5, 1], [1, 2, 2]) == pytest.approx(0.75 + 1.0)
    assert FRACTIONS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_log_ratio_of_a_curve_at_the_clean_perplexity_is_zero():
    numbers = curve_numbers(FRACTIONS, [3.7] * 10, 3.7)
    assert numbers["log_ratio"] == (0.0,) * 10 and numbers["log_ratio_area"] == 0.0
    assert numbers["normalised"] == (1.0,) * 10 and numbers["auc"] == pytest.approx(0.9)


def test_log_ratio_by_hand():
    numbers = curve_numbers([0, 0.5, 1], [2.0, 4.0, 8.0], 2.0)
    assert numbers["normalised"] == (1.0, 2.0, 4.0)
    assert numbers["auc"] == pytest.approx(0.5 * (1 + 2) / 2 + 0.5 * (2 + 4) / 2)
    assert numbers["log_ratio"] == pytest.approx((0.0, np.log(2), np.log(4)))
    # 0.5 (0 + ln 2) / 2 + 0.5 (ln 2 + ln 4) / 2 = ln 2
    assert numbers["log_ratio_area"] == pytest.approx(np.log(2))
    below = curve_numbers([0, 1], [2.0, 1.0], 2.0)  # the answer became more likely
    assert below["log_ratio_area"] == pytest.approx(np.log(0.5) / 2) and below["log_ratio_area"] < 0


def test_log_ratio_area_rises_with_every_perturbed_perplexity():
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = np.exp(rng.normal(1.0, 2.0, size=len(FRACTIONS)))
        base = curve_numbers(FRACTIONS, scores, scores[0])["log_ratio_area"]
        for level in range(1, len(FRACTIONS)):
            higher = scores.copy()
            higher[level] *= 1.5
            assert curve_numbers(FRACTIONS, higher, scores[0])["log_ratio_area"] > base
            lower = scores.copy()
            lower[level] /= 1.5
            assert curve_numbers(FRACTIONS, lower, scores[0])["log_ratio_area"] < base


def test_log_ratio_is_undefined_where_a_score_is_not_positive():
    crossed = curve_numbers([0, 0.5, 1], [0.3, 0.1, -0.05], 0.3)  # a similarity past 0
    assert crossed["log_ratio"][:2] == pytest.approx((0.0, np.log(1 / 3)))
    assert np.isnan(crossed["log_ratio"][2]) and np.isnan(crossed["log_ratio_area"])
    assert crossed["auc"] == pytest.approx(0.5 * (1 + 1 / 3) / 2 + 0.5 * (1 / 3 - 1 / 6) / 2)
    dead = curve_numbers([0, 1], [0.0, 0.2], 0.0)
    assert all(np.isnan(dead[key]) for key in ("auc", "log_ratio_area"))


@pytest.fixture(scope="module")
def loaded():
    return tiny_llava(seed=0)


@pytest.fixture(scope="module")
def setup(loaded):
    image = noise_image(5)
    adapter = loaded.adapter
    prepared = adapter.prepare(loaded, [image], "what is it?")
    layout = adapter.locator.locate(prepared)
    answer = adapter.encode_answer(loaded, prepared, "red circle")
    relevance = np.random.default_rng(0).random(layout.grids[0].shape)
    return image, answer, layout.grids, [relevance]


def test_replacement_color_is_the_processors_mean(loaded):
    mean = loaded.processor.image_processor.image_mean
    assert replacement_color(loaded.processor) == tuple(round(v * 255) for v in mean)


@pytest.mark.parametrize("order", ["positive", "negative"])
def test_curve_starts_at_exactly_one(loaded, setup, order):
    image, answer, grids, maps = setup
    curve = perturbation_curve(loaded, image, "what is it?", answer, maps, grids, order=order)
    assert curve.normalised[0] == 1.0
    assert curve.fractions == FRACTIONS and len(curve.perplexities) == 10
    assert all(np.isfinite(curve.normalised)) and all(v > 0 for v in curve.perplexities)
    assert curve.auc == pytest.approx(trapezoid_auc(FRACTIONS, curve.normalised))
    assert curve.log_ratio[0] == 0.0
    assert curve.log_ratio == pytest.approx(
        np.log(np.divide(curve.perplexities, curve.perplexities[0]))
    )
    assert curve.log_ratio_area == pytest.approx(trapezoid_auc(FRACTIONS, curve.log_ratio))


def test_batched_levels_match_one_level_per_forward(loaded, setup):
    image, answer, grids, maps = setup
    fractions = (0.0, 0.3, 0.6)
    one = perturbation_curve(
        loaded, image, "what is it?", answer, maps, grids, fractions=fractions, batch_size=1
    )
    many = perturbation_curve(
        loaded, image, "what is it?", answer, maps, grids, fractions=fractions, batch_size=3
    )
    np.testing.assert_allclose(one.perplexities, many.perplexities, rtol=1e-4)


def test_insertion_starts_from_the_replaced_image(loaded, setup):
    image, answer, grids, maps = setup
    curve = perturbation_curve(
        loaded,
        image,
        "what is it?",
        answer,
        maps,
        grids,
        order="insertion",
        fractions=(0.0, 0.5),
        replacement="blur",
    )
    assert curve.order == "insertion" and len(curve.normalised) == 2
    # nothing inserted yet: not the clean image
    assert curve.normalised[0] != 1.0


def test_bad_fractions_and_order_are_input_errors(loaded, setup):
    image, answer, grids, maps = setup
    with pytest.raises(InputError, match="fractions"):
        perturbation_curve(loaded, image, "q", answer, maps, grids, fractions=(0.2, 0.1))
    with pytest.raises(InputError, match="order"):
        perturbation_curve(loaded, image, "q", answer, maps, grids, order="sideways")
    assert isinstance(image, Image.Image)


def test_mask_to_grid_is_the_covered_fraction_of_each_cell():
    mask = np.zeros((20, 31), bool)
    mask[0:10, 0:5] = True  # half of cell 0 (10 x 10)
    cover = mask_to_grid(mask, GRID)
    assert cover.shape == (2, 3)
    assert cover[0, 0] == pytest.approx(0.5) and cover.sum() == pytest.approx(0.5)


def _shapes_llava():
    """The embedded, trained LLaVA: a random model has no reason to rank a mask first."""
    from dexar_core.api import load

    return load("shapes-llava")


def test_an_oracle_map_beats_its_inverse_on_the_positive_test():
    from dexar_core.datasets.shapes import ShapesDataset

    loaded = _shapes_llava()
    adapter = loaded.adapter
    oracle_aucs, inverted_aucs = [], []
    for item in ShapesDataset("test", size=8, kinds=("color", "shape")):
        prepared = adapter.prepare(loaded, [item.image], item.question)
        grids = adapter.locator.locate(prepared).grids
        answer = adapter.encode_answer(loaded, prepared, item.answer)
        oracle = [mask_to_grid(item.target_mask, grid) for grid in grids]
        inverted = [1.0 - values for values in oracle]
        for maps, aucs in ((oracle, oracle_aucs), (inverted, inverted_aucs)):
            curve = perturbation_curve(
                loaded, item.image, item.question, answer, maps, grids, batch_size=5
            )
            aucs.append(curve.auc)
    assert np.mean(oracle_aucs) > np.mean(inverted_aucs)


def test_perturbation_aucs_of_an_explanation(loaded):
    from dexar_core.api import explain

    image = noise_image(6)
    explanation = explain(loaded, image, "what is it?", answer="red circle", method="attention")
    curves = perturbation_aucs(loaded, image, explanation, fractions=(0.0, 0.5), batch_size=2)
    assert set(curves) == {"positive", "negative"}
    for order, curve in curves.items():
        assert curve.order == order and curve.normalised[0] == 1.0
        assert curve.auc == pytest.approx(0.25 * (1.0 + curve.normalised[1]))
