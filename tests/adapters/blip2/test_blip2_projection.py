"""The generic relevance projection BLIP-2 needs (V = query tokens, maps over patches)."""

from __future__ import annotations

import numpy as np
import pytest

from dexar_core.errors import LayoutError
from dexar_core.values import Grid, RelevanceProjection, VisualLayout

BOX = (0, 0, 64, 64)


def patch_grid(rows: int = 2, cols: int = 3) -> Grid:
    return Grid(
        name="image 0", height=rows, width=cols, positions=np.arange(rows * cols), pixel_box=BOX
    )


def projection(weights=None, grids=None) -> RelevanceProjection:
    weights = np.arange(4 * 6, dtype=np.float32).reshape(4, 6) if weights is None else weights
    return RelevanceProjection(
        name="test", weights=weights, grids=grids or [patch_grid()], details={"kind": "mean"}
    )


def query_layout(queries: int = 4, extra_text: int = 3, **changes) -> VisualLayout:
    length = queries + extra_text
    visual = np.zeros(length, dtype=bool)
    visual[:queries] = True
    fields = {
        "visual_mask": visual,
        "text_mask": ~visual,
        "template_mask": np.zeros(length, dtype=bool),
        "grids": [
            Grid(name="queries", height=1, width=queries, positions=range(queries), pixel_box=BOX)
        ],
        "projection": projection(),
    }
    return VisualLayout(**{**fields, **changes})


def test_project_is_a_matrix_product_over_the_last_axis():
    proj = projection()
    relevance = np.array([[1.0, 0.0, 0.0, 2.0], [0.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(proj.project(relevance), relevance @ proj.weights)
    assert proj.project(relevance[0]).shape == (6,)
    assert proj.units == 6
    assert proj.describe() == {"name": "test", "units": 6, "kind": "mean"}
    assert not proj.weights.flags.writeable


def test_the_unit_layout_is_all_visual_over_the_projection_grids():
    unit = projection().unit_layout
    assert unit.visual_positions.tolist() == list(range(6))
    assert not unit.text_mask.any()
    assert unit.grids[0].shape == (2, 3)


@pytest.mark.parametrize(
    ("weights", "grids", "match"),
    [
        (np.ones(6, np.float32), None, "matrix"),
        (np.full((4, 6), np.nan, np.float32), None, "NaN"),
        (np.ones((4, 5), np.float32), None, "grids"),
        (np.ones((4, 6), np.float32), [patch_grid(1, 3)], "grids"),
    ],
)
def test_inconsistent_projections_are_layout_errors(weights, grids, match):
    with pytest.raises(LayoutError, match=match):
        projection(weights, grids)


def test_a_layout_checks_the_projection_rows_against_v_and_keeps_it_when_extended():
    layout = query_layout()
    longer = layout.with_length(10)
    assert longer.projection == layout.projection
    with pytest.raises(LayoutError, match="one weight row per visual position"):
        query_layout(projection=projection(np.ones((5, 6), np.float32)))
    with pytest.raises(LayoutError, match="relevance over V"):
        layout.projection.project(np.ones(3))
