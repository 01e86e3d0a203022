"""The public hypothesis strategies generate what they promise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from dexar_core.values import Grid, VisualLayout
from dexar_plugins.testing.strategies import (
    attention_rows,
    gradient_tensors,
    grids,
    visual_layouts,
)

# Only generation: the first example showing the placement is enough, shrinking it is not.
FIND_SETTINGS = settings(
    database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
)


@given(grids(max_side=5))
def test_grids_are_valid_and_contiguous(grid):
    assert isinstance(grid, Grid)
    assert 1 <= grid.height <= 5 and 1 <= grid.width <= 5
    assert np.array_equal(np.diff(grid.positions), np.ones(grid.positions.size - 1))


@given(visual_layouts())
def test_visual_layouts_validate_and_have_consistent_masks(layout):
    revalidated = VisualLayout(
        visual_mask=layout.visual_mask,
        text_mask=layout.text_mask,
        template_mask=layout.template_mask,
        grids=layout.grids,
    )
    assert revalidated == layout
    assert np.array_equal(layout.text_mask, ~layout.visual_mask)
    assert not (layout.template_mask & ~layout.text_mask).any()
    assert layout.text_mask.sum() >= 1
    cells = sum(grid.height * grid.width for grid in layout.grids)
    assert cells == layout.visual_mask.sum()


@given(visual_layouts(max_grids=1, max_text_gap=0, min_text=0))
def test_visual_layouts_can_be_all_visual(layout):
    assert len(layout.grids) == 1
    grid = layout.grids[0]
    assert layout.sequence_length >= grid.height * grid.width


@pytest.mark.parametrize(
    "placement",
    [
        lambda layout: layout.visual_mask[0],
        lambda layout: layout.visual_mask[-1],
        lambda layout: not layout.visual_mask[0] and not layout.visual_mask[-1],
        lambda layout: len(layout.grids) > 1,
        lambda layout: any(np.diff(grid.positions).max(initial=1) > 1 for grid in layout.grids),
    ],
    ids=["image first", "image last", "image inside", "several grids", "row separators"],
)
def test_visual_layouts_place_visual_blocks_anywhere(placement):
    assert placement(find(visual_layouts(min_text=0), placement, settings=FIND_SETTINGS))


def test_visual_layouts_reject_impossible_bounds():
    @given(visual_layouts(max_grids=0))
    def draw_one(layout):
        pass

    with pytest.raises(InvalidArgument):
        draw_one()


@given(attention_rows(st.integers(1, 32), leading_shape=(2, 3)))
def test_attention_rows_are_causal_probabilities(rows):
    assert rows.dtype == np.float32
    assert rows.shape[:2] == (2, 3)
    assert (rows >= 0).all()
    np.testing.assert_allclose(rows.sum(axis=-1), 1.0, rtol=0, atol=1e-5)
    last_visible = np.flatnonzero(rows.reshape(-1, rows.shape[-1]).any(axis=0)).max()
    assert not rows[..., last_visible + 1 :].any()


@given(attention_rows(8, query_position=3))
def test_attention_rows_are_zero_after_the_given_query(rows):
    assert rows.shape == (8,)
    assert not rows[4:].any()
    assert rows[:4].sum() == pytest.approx(1.0, abs=1e-6)


def test_attention_rows_reject_a_query_outside_the_keys():
    @given(attention_rows(4, query_position=4))
    def draw_one(rows):
        pass

    with pytest.raises(InvalidArgument):
        draw_one()


@given(st.data())
def test_gradient_tensors_match_the_layout(data):
    layout = data.draw(visual_layouts(max_grids=2, max_side=3))
    gradients = data.draw(gradient_tensors(layout, tokens=2, layers=st.integers(1, 2), heads=3))

    assert gradients.dtype == np.float32
    assert gradients.shape[0] == 2 and gradients.shape[2:] == (3, layout.sequence_length)
    assert np.isfinite(gradients).all()
    assert (gradients >= 0).all()
