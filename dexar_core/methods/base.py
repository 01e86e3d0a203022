"""The interface every explanation method shares, and its raw result."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from dexar_core.engine.layers import resolve_layers
from dexar_core.heatmap import minmax, to_grid
from dexar_core.interfaces import ANSWER_TOKENS
from dexar_core.records import AttentionGradients
from dexar_core.values import VisualLayout


@attrs.frozen(kw_only=True)
class MethodResult:
    """A method's relevance over the visual positions, before maps are drawn.

    Attributes:
        token_relevance: ``[T, N]`` per answer token, over the layout's visual
            positions in increasing key order (raw, not normalised).
        sequence_relevance: ``[N]`` the aggregated relevance of the whole answer.
        token_weights: ``[T]`` how visually grounded each token is (DEX-AR's delta;
            ones for methods without token weighting).
        head_weights: ``[T, L, H]`` per-head weights, or an empty array.
        sequence_fallback: True when every token weight was 0 and the sequence map
            fell back to weighting every token by 1.
        minmax_after_upsampling: True when the method's maps are min-max normalised
            after bilinear upsampling to the image (LeGrad's order) rather than on the
            grid; ``Explanation.upsample`` then normalises the upsampled maps again.
    """

    token_relevance: np.ndarray
    sequence_relevance: np.ndarray
    token_weights: np.ndarray
    head_weights: np.ndarray = attrs.field(factory=lambda: np.zeros((0, 0, 0), np.float32))
    sequence_fallback: bool = False
    minmax_after_upsampling: bool = False

    def raw_maps(self, layout: VisualLayout) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per grid: the unnormalised ``[T, h, w]`` token maps and ``[h, w]`` sequence map."""
        positions = layout.visual_positions
        token_maps, sequence_maps = [], []
        for grid in layout.grids:
            rows = [to_grid(row, grid, positions) for row in self.token_relevance]
            token_maps.append(
                np.stack(rows) if rows else np.zeros((0, *grid.shape), dtype=np.float32)
            )
            sequence_maps.append(to_grid(self.sequence_relevance, grid, positions))
        return token_maps, sequence_maps

    def maps(self, layout: VisualLayout) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per grid: min-max normalised ``[T, h, w]`` token maps and ``[h, w]`` sequence map."""
        raw_tokens, raw_sequences = self.raw_maps(layout)
        token_maps = [
            np.stack([minmax(row) for row in stack]) if len(stack) else stack
            for stack in raw_tokens
        ]
        return token_maps, [minmax(sequence) for sequence in raw_sequences]


class Method(ABC):
    """An explanation method: from the engine's record to relevance over V.

    Args:
        layers: ``"all"``, ``k`` (the last k layers) or a list of layer indices.
    """

    name: str = ""
    needs_gradients: bool = True
    #: extra records the engine must fill (``dexar_core.engine.one_pass.NEEDS``): e.g.
    #: ``raw_gradients``, ``full_attention``, ``full_gradients``, ``position_logits``.
    needs: frozenset[str] = frozenset()
    #: the attributes that hold the method's own options, recorded after ``layers`` by
    #: :attr:`options` in this order.
    option_names: tuple[str, ...] = ()

    def __init__(self, *, layers: Any = "all") -> None:
        self.layers_option = layers

    def layers(self, num_layers: int, units: str = ANSWER_TOKENS) -> tuple[int, ...]:
        """The layers this method needs captured, of ``num_layers``.

        Args:
            num_layers: L, how many layers the adapter's pass can explain.
            units: what the explanation explains (``ModelAdapter.units``), for a method
                whose default layers differ by model kind (``legrad``).
        """
        return resolve_layers(self.layers_option, num_layers)

    @property
    def options(self) -> Mapping[str, Any]:
        """The options as given, for the Explanation's record: layers, then :attr:`option_names`."""
        return {
            "layers": self.layers_option,
            **{name: getattr(self, name) for name in self.option_names},
        }

    @abstractmethod
    def explain(self, record: AttentionGradients) -> MethodResult:
        """Relevance of the visual positions for each answer token and the sequence."""
