"""seen_mask: the union of an image's grid boxes, rounded as maps are pasted."""

from __future__ import annotations

import numpy as np
import pytest

from dexar_core.errors import InputError
from dexar_core.heatmap import paste_to_image
from dexar_core.seen import scored_pixels, seen_boxes, seen_mask
from dexar_core.values import Grid, VisualLayout


def grid(box, image_index=0, first=0):
    return Grid(
        name=f"image {image_index}",
        height=2,
        width=2,
        positions=range(first, first + 4),
        pixel_box=box,
        image_index=image_index,
    )


def test_a_crop_leaves_the_bands_unseen_where_paste_leaves_zeros():
    box = (69.6, 0.0, 250.4, 180.0)
    seen = seen_mask([grid(box)], (320, 180))
    pasted = paste_to_image(np.ones((2, 2)), box, (320, 180))
    assert np.array_equal(seen, pasted > 0)
    assert seen_boxes([grid(box)]) == ((70, 0, 250, 180),)


def test_each_image_has_its_own_boxes_and_a_layout_uses_its_grids():
    grids = (grid((0, 0, 10, 10)), grid((5, 0, 15, 10), image_index=1, first=4))
    layout = VisualLayout(
        visual_mask=[True] * 8 + [False],
        text_mask=[False] * 8 + [True],
        template_mask=[False] * 9,
        grids=grids,
    )
    assert seen_mask(layout, (20, 10), image_index=1)[:, 5:15].all()
    assert not seen_mask(layout, (20, 10), image_index=1)[:, :5].any()
    with pytest.raises(InputError, match="no grid belongs to image 2"):
        seen_mask(layout, (20, 10), image_index=2)


def test_a_box_past_the_image_is_clipped_and_bad_input_is_refused():
    assert seen_mask([grid((-4, -4, 30, 30))], (20, 10)).all()
    with pytest.raises(InputError, match="image_size"):
        seen_mask([grid((0, 0, 5, 5))], (0, 10))
    with pytest.raises(InputError, match="sequence of Grid"):
        seen_mask(42, (5, 5))
    with pytest.raises(InputError, match="valid has shape"):
        scored_pixels(np.ones((3, 3), bool), [grid((0, 0, 5, 5))], (5, 5))
