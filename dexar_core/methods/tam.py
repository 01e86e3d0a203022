"""Token Activation Map baseline (Li et al., ICCV 2025), forward-only.

From the published description: the map of answer token v_t is the final-layer logit
of v_t at every visual position (class-activation style, ReLU'd). Context tokens (the
prompt's text and the earlier answer tokens) leave their own activations in the visual
tokens; *estimated causal inference* removes them: the interference map is the mean of
the context tokens' own maps weighted by how strongly each context position activates
v_t, scaled by least squares and subtracted (then ReLU). A *rank Gaussian filter*
(a 3x3 window, its values sorted, averaged with Gaussian weights over the rank whose
width is the window's coefficient of variation) denoises each grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dexar_core.errors import MethodError
from dexar_core.methods.attention import summed_over_tokens
from dexar_core.methods.base import Method, MethodResult
from dexar_core.methods.rollout import require
from dexar_core.records import AttentionGradients


def rank_gaussian_filter(map2d: np.ndarray, kernel_size: int = 3) -> np.ndarray:
    """Denoise a 2-D map: per window, a Gaussian-over-rank weighted mean of sorted values.

    The Gaussian is centred on the median rank; its width is the window's coefficient of
    variation (std / mean), so a flat window keeps its value and an outlier is damped.
    A window with a non-positive mean gives 0; a constant window gives its value.

    Args:
        map2d: ``[h, w]`` non-negative values.
        kernel_size: odd window side.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise MethodError(f"tam's kernel_size must be a positive odd int, got {kernel_size!r}.")
    values = np.asarray(map2d, dtype=np.float64)
    pad = kernel_size // 2
    # reflect needs two rows/columns; a one-token-wide grid repeats its edge instead
    if min(values.shape) > 1:
        padded = np.pad(values, pad, mode="reflect")
    else:
        padded = np.pad(values, pad, mode="edge")
    windows = sliding_window_view(padded, (kernel_size, kernel_size))
    ranked = np.sort(windows.reshape(*values.shape, -1), axis=-1)
    mean = ranked.mean(axis=-1)
    spread = ranked.std(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(mean > 0, spread / mean, 0.0)
    offsets = np.arange(kernel_size**2) - kernel_size**2 // 2
    flat = sigma <= 0
    safe = np.where(flat, 1.0, sigma)[..., None]
    kernel = np.exp(-(offsets**2) / (2 * safe**2))
    kernel /= kernel.sum(axis=-1, keepdims=True)
    filtered = (ranked * kernel).sum(axis=-1)
    filtered = np.where(flat, mean, filtered)
    return np.where(mean > 0, filtered, 0.0).astype(np.float32)


def estimated_causal_inference(
    activation: np.ndarray, context_maps: np.ndarray, context_scores: np.ndarray
) -> np.ndarray:
    """ReLU(activation - s * I), I = sum_c w_c context_maps[c], w = scores / sum(scores).

    ``s`` minimises ``||activation - s I||^2`` (closed form; 0 when I is all zeros).

    Args:
        activation: ``[N]`` the explained token's activation over V.
        context_maps: ``[C, N]`` each context token's own activation over V.
        context_scores: ``[C]`` non-negative activation of the explained token at each
            context position.
    """
    if context_maps.shape[0] == 0:
        return activation
    weights = context_scores / (context_scores.sum() + 1e-8)
    interference = weights @ context_maps
    energy = float(interference @ interference)
    scale = float(activation @ interference) / energy if energy > 0 else 0.0
    return np.maximum(activation - scale * interference, 0.0)


class TamMethod(Method):
    """Token Activation Map: logit activations, causal-inference correction, rank filter.

    Forward-only (it reads ``position_logits``, the final-layer logits at every key
    position); it needs the token ids of a decoder self-attention sequence.

    Args:
        causal_inference: subtract the context tokens' estimated interference.
        kernel_size: the rank Gaussian filter's window (odd); 1 switches it off.
        layers: the layers of the (unused) gradient record; the last one by default.
    """

    name = "tam"
    needs_gradients = False
    needs = frozenset({"position_logits"})
    option_names = ("causal_inference", "kernel_size")

    def __init__(
        self, *, causal_inference: bool = True, kernel_size: int = 3, layers: Any = 1
    ) -> None:
        super().__init__(layers=layers)
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise MethodError(f"tam's kernel_size must be a positive odd int, got {kernel_size!r}.")
        self.causal_inference = bool(causal_inference)
        self.kernel_size = int(kernel_size)

    def explain(self, record: AttentionGradients) -> MethodResult:
        """See :meth:`Method.explain`."""
        logits = np.maximum(require(record, "position_logits", self.name, "position_logits"), 0)
        ids = require(record, "sequence_ids", self.name, "position_logits")
        row_of = {int(c): index for index, c in enumerate(record.logit_classes)}
        layout = record.layout
        visual = layout.visual_positions
        context_text = layout.text_set("prompt_only")
        own_maps = logits[[row_of[int(i)] for i in ids]][:, visual]  # [K, N]
        rows = []
        for answer_id, query in zip(record.answer_ids, record.query_rows):
            scores = logits[row_of[int(answer_id)]]
            activation = scores[visual].astype(np.float64)
            context = np.flatnonzero(context_text[: query + 1] & (ids[: query + 1] != answer_id))
            text_scores = scores[context]
            if self.causal_inference:
                activation = estimated_causal_inference(
                    activation, own_maps[context].astype(np.float64), text_scores
                )
            rows.append(self._filtered(activation, text_scores, layout))
        return summed_over_tokens(np.stack(rows) if rows else np.zeros((0, visual.size)))

    def _filtered(self, activation: np.ndarray, text_scores: np.ndarray, layout: Any) -> np.ndarray:
        # TAM normalises the visual and text activations together before filtering
        joint = np.concatenate([activation, text_scores])
        low, high = joint.min(), joint.max()
        normalised = (activation - low) / (high - low) if high > low else np.zeros_like(activation)
        if self.kernel_size == 1:
            return normalised
        filtered = np.zeros_like(normalised)
        positions = layout.visual_positions
        for grid in layout.grids:
            index = np.searchsorted(positions, grid.positions)
            patch = normalised[index].reshape(grid.shape)
            filtered[index] = rank_gaussian_filter(patch, self.kernel_size).reshape(-1)
        return filtered
