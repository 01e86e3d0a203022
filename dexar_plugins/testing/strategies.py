"""Hypothesis strategies for dexar's value records and tensors.

Public for adapter and method authors (requires ``hypothesis``, a ``dev`` extra). Each
strategy draws shapes first and elements second; elements are bounded float32 without
NaN, infinities or subnormals, so a failing example shrinks to small shapes and plain
numbers.

Example:
    >>> from hypothesis import given
    >>> from dexar_plugins.testing.strategies import visual_layouts
    >>> @given(visual_layouts())
    ... def test_every_visual_position_is_in_one_grid(layout): ...
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

from dexar_core.values import Grid, VisualLayout

MAX_SIDE = 6
MAX_TEXT_GAP = 12
MAX_PIXEL = 4096.0

T = TypeVar("T")


def _as_strategy(value: T | st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def float32_elements(min_value: float, max_value: float) -> st.SearchStrategy[float]:
    """Finite float32 numbers in ``[min_value, max_value]``, without subnormals."""
    return st.floats(min_value, max_value, width=32, allow_subnormal=False)


def pixel_boxes() -> st.SearchStrategy[tuple[float, float, float, float]]:
    """``(left, top, right, bottom)`` boxes with a positive area, within 2 x MAX_PIXEL."""
    corner = float32_elements(0.0, MAX_PIXEL)
    extent = float32_elements(1.0, MAX_PIXEL)
    return st.tuples(corner, corner, extent, extent).map(
        lambda box: (box[0], box[1], box[0] + box[2], box[1] + box[3])
    )


@st.composite
def grids(
    draw: st.DrawFn, *, max_side: int = MAX_SIDE, max_start: int = 64, image_index: int = 0
) -> Grid:
    """A standalone :class:`Grid` whose row-major positions are contiguous.

    Args:
        max_side: largest height and width drawn.
        max_start: largest key position of the first cell.
        image_index: the image the grid belongs to.
    """
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    start = draw(st.integers(0, max_start))
    return Grid(
        name=f"image {image_index}",
        height=height,
        width=width,
        positions=np.arange(start, start + height * width),
        pixel_box=draw(pixel_boxes()),
        image_index=image_index,
    )


@st.composite
def visual_layouts(
    draw: st.DrawFn,
    *,
    max_grids: int = 3,
    max_side: int = MAX_SIDE,
    max_text_gap: int = MAX_TEXT_GAP,
    min_text: int = 1,
) -> VisualLayout:
    """A valid :class:`VisualLayout`: one or more grids placed anywhere in the sequence.

    Each grid is a block of visual tokens in row-major order, optionally with one text
    token between rows (as models that insert a row separator do); text runs of random
    length sit before, between and after the blocks. ``text_mask`` is every non-visual
    position; ``template_mask`` is a random subset of the text positions.

    Args:
        max_grids: most grids (images, tiles or frame groups) drawn.
        max_side: largest grid height and width.
        max_text_gap: longest text run before, between or after the blocks.
        min_text: fewest text positions in the sequence.
    """
    if min_text < 0 or max_grids < 1 or max_side < 1 or max_text_gap < 0:
        raise InvalidArgument(
            "visual_layouts needs max_grids >= 1, max_side >= 1, max_text_gap >= 0 and "
            f"min_text >= 0; got {max_grids=}, {max_side=}, {max_text_gap=}, {min_text=}."
        )
    side = st.integers(1, max_side)
    shapes = draw(st.lists(st.tuples(side, side), min_size=1, max_size=max_grids))
    row_separated = [draw(st.booleans()) for _ in shapes]
    gap_count = len(shapes) + 1
    gaps = draw(st.lists(st.integers(0, max_text_gap), min_size=gap_count, max_size=gap_count))
    separators = sum(h - 1 for (h, _), sep in zip(shapes, row_separated, strict=True) if sep)
    deficit = max(0, min_text - sum(gaps) - separators)
    gaps[draw(st.integers(0, len(shapes)))] += deficit

    grid_list = []
    position = 0
    for index, ((height, width), separated) in enumerate(zip(shapes, row_separated, strict=True)):
        position += gaps[index]
        cells: list[int] = []
        for row in range(height):
            cells.extend(range(position, position + width))
            position += width + (1 if separated and row < height - 1 else 0)
        grid_list.append(
            Grid(
                name=f"image {index}",
                height=height,
                width=width,
                positions=cells,
                pixel_box=draw(pixel_boxes()),
                image_index=index,
            )
        )
    length = position + gaps[-1]
    visual_mask = np.zeros(length, dtype=bool)
    visual_mask[np.concatenate([grid.positions for grid in grid_list])] = True
    template_candidates = draw(hnp.arrays(np.bool_, length))
    return VisualLayout(
        visual_mask=visual_mask,
        text_mask=~visual_mask,
        template_mask=template_candidates & ~visual_mask,
        grids=tuple(grid_list),
    )


@st.composite
def attention_rows(
    draw: st.DrawFn,
    key_length: int | st.SearchStrategy[int] = st.integers(1, 64),  # noqa: B008
    *,
    query_position: int | st.SearchStrategy[int] | None = None,
    leading_shape: tuple[int, ...] = (),
) -> np.ndarray:
    """Causal attention probabilities of one query row, float32 ``[*leading_shape, K]``.

    Every row is non-negative, sums to 1 within float32 rounding, and is exactly zero
    after the query position (keys the query cannot see). A row whose drawn weights are
    all zero puts its whole mass on the query position itself.

    Args:
        key_length: K, the key sequence length (an int or a strategy).
        query_position: the query's key index, in ``[0, K)``; drawn when None.
        leading_shape: extra leading axes, e.g. ``(layers, heads)``.
    """
    keys = draw(_as_strategy(key_length))
    if keys < 1:
        raise InvalidArgument(f"attention_rows needs key_length >= 1, got {keys}.")
    query = draw(
        st.integers(0, keys - 1) if query_position is None else _as_strategy(query_position)
    )
    if not 0 <= query < keys:
        raise InvalidArgument(
            f"attention_rows needs 0 <= query_position < key_length, got {query} and {keys}."
        )
    # Weights are 0 or at least 2**-20 so that normalised rows hold no float32 subnormals.
    weights = st.just(0.0) | float32_elements(2.0**-20, 1.0)
    visible = draw(hnp.arrays(np.float32, (*leading_shape, query + 1), elements=weights))
    visible = visible.astype(np.float64)
    empty = visible.sum(axis=-1) == 0
    visible[empty, query] = 1.0
    rows = np.zeros((*leading_shape, keys), dtype=np.float32)
    rows[..., : query + 1] = visible / visible.sum(axis=-1, keepdims=True)
    return rows


def gradient_tensors(
    layout: VisualLayout,
    tokens: int | st.SearchStrategy[int] = st.integers(1, 3),  # noqa: B008
    layers: int | st.SearchStrategy[int] = st.integers(1, 3),  # noqa: B008
    heads: int | st.SearchStrategy[int] = st.integers(1, 4),  # noqa: B008
    *,
    max_value: float = 1e3,
) -> st.SearchStrategy[np.ndarray]:
    """Non-negative attention-gradient magnitudes G, float32 ``[T, L, H, K]``.

    Args:
        layout: gives K, the key sequence length.
        tokens: T, explained answer tokens (an int or a strategy).
        layers: L, layers (an int or a strategy).
        heads: H, heads per layer (an int or a strategy).
        max_value: largest element.
    """
    keys = layout.sequence_length
    elements = float32_elements(0.0, max_value)

    def arrays_of(shape: tuple[Any, ...]) -> st.SearchStrategy[np.ndarray]:
        return hnp.arrays(np.float32, (*shape, keys), elements=elements)

    return st.tuples(_as_strategy(tokens), _as_strategy(layers), _as_strategy(heads)).flatmap(
        arrays_of
    )
