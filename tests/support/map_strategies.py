"""Hypothesis strategies of small 2-D maps shared by the heatmap and metric tests."""

from __future__ import annotations

from hypothesis import strategies as st

from dexar_plugins.testing.strategies import float32_elements

finite_values = float32_elements(-1e3, 1e3)
"""Finite float32 map values of either sign, without subnormals."""

map_shapes = st.tuples(st.integers(1, 10), st.integers(1, 10))
"""``(height, width)`` of a map or mask, 1 to 10 each way."""
