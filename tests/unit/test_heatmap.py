"""Tests of dexar_core.heatmap: minmax, to_grid, upsample, paste_to_image (docs/method.md §5)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from map_strategies import finite_values, map_shapes

from dexar_core.errors import DexarError, InputError, LayoutError
from dexar_core.heatmap import minmax, paste_to_image, to_grid, upsample
from dexar_core.values import Grid

unit_values = st.floats(0, 1, width=32, allow_subnormal=False)
sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))


def test_minmax_maps_the_range_onto_zero_one() -> None:
    result = minmax(np.array([2.0, 4.0, 6.0]))

    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [0.0, 0.5, 1.0])


def test_minmax_keeps_the_shape() -> None:
    assert minmax(np.arange(6).reshape(2, 3)).shape == (2, 3)


@given(value=finite_values, shape=map_shapes)
def test_minmax_of_a_constant_map_is_zeros(value: float, shape: tuple[int, int]) -> None:
    result = minmax(np.full(shape, value, dtype=np.float32))

    np.testing.assert_array_equal(result, np.zeros(shape, dtype=np.float32))


@given(values=arrays(np.float32, map_shapes, elements=finite_values))
def test_minmax_lies_in_zero_one_and_reaches_both_ends(values: np.ndarray) -> None:
    result = minmax(values)

    assert result.min() >= 0 and result.max() <= 1
    if values.max() > values.min():
        assert result.min() == 0 and result.max() == 1
        assert result.flat[int(np.argmax(values))] == 1


def test_minmax_survives_a_span_beyond_float64() -> None:
    result = minmax(np.array([-1e308, 0.0, 1e308]))

    np.testing.assert_allclose(result, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_minmax_rejects_non_finite_values_by_name(bad: float) -> None:
    with pytest.raises(DexarError, match="NaN or infinite"):
        minmax(np.array([0.0, bad, 1.0]))


def _grids() -> tuple[Grid, Grid]:
    first = Grid(name="image 0", height=1, width=2, positions=[3, 4], pixel_box=(0, 0, 2, 1))
    second = Grid(name="image 1", height=2, width=2, positions=[5, 6, 7, 8], pixel_box=(0, 0, 2, 2))
    return first, second


def test_to_grid_selects_the_grid_and_reshapes_row_major() -> None:
    first, second = _grids()
    visual_positions = np.array([3, 4, 5, 6, 7, 8])
    vector = np.array([10, 11, 12, 13, 14, 15])

    np.testing.assert_array_equal(to_grid(vector, first, visual_positions), [[10, 11]])
    np.testing.assert_array_equal(to_grid(vector, second, visual_positions), [[12, 13], [14, 15]])


def test_to_grid_follows_the_grid_order_not_the_sequence_order() -> None:
    transposed = Grid(name="t", height=2, width=2, positions=[5, 7, 6, 8], pixel_box=(0, 0, 2, 2))
    vector = np.array([12, 13, 14, 15])

    result = to_grid(vector, transposed, np.array([5, 6, 7, 8]))

    np.testing.assert_array_equal(result, [[12, 14], [13, 15]])


def test_to_grid_rejects_a_vector_over_the_whole_sequence() -> None:
    first, _ = _grids()

    with pytest.raises(InputError, match="one value per visual position"):
        to_grid(np.zeros(9), first, np.array([3, 4, 5, 6, 7, 8]))


def test_to_grid_rejects_a_grid_outside_the_visual_set() -> None:
    _, second = _grids()

    with pytest.raises(LayoutError, match=r"\[7, 8\]"):
        to_grid(np.zeros(4), second, np.array([3, 4, 5, 6]))


def test_upsample_is_bilinear_with_half_pixel_centres() -> None:
    result = upsample(np.array([[0.0, 1.0]]), (4, 1))

    assert result.dtype == np.float32
    np.testing.assert_allclose(result, [[0.0, 0.25, 0.75, 1.0]], atol=1e-6)


def test_upsample_takes_pillow_size_order() -> None:
    assert upsample(np.zeros((2, 2)), (5, 3)).shape == (3, 5)


def test_upsample_to_the_same_size_is_the_identity() -> None:
    map2d = np.random.default_rng(0).random((3, 4), dtype=np.float32)

    np.testing.assert_array_equal(upsample(map2d, (4, 3)), map2d)


@given(map2d=arrays(np.float32, map_shapes, elements=unit_values), size=sizes)
def test_upsample_keeps_a_unit_map_in_zero_one(map2d: np.ndarray, size: tuple[int, int]) -> None:
    result = upsample(map2d, size)

    assert result.shape == (size[1], size[0])
    assert result.min() >= map2d.min() and result.max() <= map2d.max()


@pytest.mark.parametrize("size", [(0, 3), (3,), (2.5, 3)])
def test_upsample_rejects_a_bad_size(size: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match="width, height"):
        upsample(np.zeros((2, 2)), size)  # type: ignore[arg-type]


def test_upsample_rejects_a_map_that_is_not_2d() -> None:
    with pytest.raises(InputError, match="2-D"):
        upsample(np.zeros(4), (2, 2))


def test_paste_to_image_fills_the_box_and_leaves_zeros_outside() -> None:
    canvas = paste_to_image(np.ones((2, 2)), (2, 1, 6, 5), (8, 6))

    expected = np.zeros((6, 8), dtype=np.float32)
    expected[1:5, 2:6] = 1
    np.testing.assert_array_equal(canvas, expected)


def test_paste_to_image_places_the_map_the_right_way_round() -> None:
    canvas = paste_to_image(np.array([[0.0, 1.0]]), (0, 0, 4, 2), (4, 4))

    assert canvas[0, 3] > canvas[0, 0]
    np.testing.assert_array_equal(canvas[2:], 0)


def test_paste_to_image_drops_the_part_of_a_padded_box_outside_the_image() -> None:
    canvas = paste_to_image(np.ones((3, 3)), (-2, 0, 4, 6), (4, 6))

    np.testing.assert_array_equal(canvas, np.ones((6, 4)))


def test_paste_to_image_rejects_a_box_outside_the_image() -> None:
    with pytest.raises(InputError, match="outside"):
        paste_to_image(np.ones((2, 2)), (10, 10, 12, 12), (8, 8))


def test_paste_to_image_rejects_a_box_without_area() -> None:
    with pytest.raises(InputError, match="no whole pixel"):
        paste_to_image(np.ones((2, 2)), (1, 1, 1.2, 3), (8, 8))
