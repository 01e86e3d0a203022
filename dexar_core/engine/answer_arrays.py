"""The engine's dense outputs, allocated once and filled one chunk of answer tokens at a time.

The gradients and attentions are ``[T, L, H, K]`` float32 arrays: at a long answer they
are the largest things an explanation holds. Each pass writes its rows straight into
them (ReLU and the visibility mask applied in place), so explaining in chunks keeps the
peak at these arrays plus one chunk's leaves and graph, flat in T beyond them
(docs/performance.md). Zero-filled arrays are allocated lazily by the OS, so keys a
chunk never reaches cost nothing until written.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class AnswerArrays:
    """``gradients``, ``attentions``, ``targets``, ``visible`` (and ``raw_gradients``).

    Args:
        tokens: T, the answer tokens explained.
        layers: L, the explained layers.
        key_length: K, the keys of the explained attention.
        raw: also keep the signed gradients (before ReLU).
    """

    def __init__(self, tokens: int, layers: int, key_length: int, *, raw: bool) -> None:
        self._shape = (tokens, layers, key_length)
        self._raw = raw
        self.gradients: np.ndarray | None = None
        self.attentions: np.ndarray | None = None
        self.raw_gradients: np.ndarray | None = None
        self.targets = np.zeros((layers, tokens), dtype=np.float32)
        self.visible = np.zeros((tokens, key_length), dtype=bool)

    def _allocate(self, heads: int) -> None:
        tokens, layers, keys = self._shape
        shape = (tokens, layers, heads, keys)
        self.gradients = np.zeros(shape, dtype=np.float32)
        self.attentions = np.zeros(shape, dtype=np.float32)
        if self._raw:
            self.raw_gradients = np.zeros(shape, dtype=np.float32)

    def fill(
        self,
        tokens: Sequence[int],
        leaves: list[torch.Tensor | None],
        grads: list[torch.Tensor | None],
        visible: Sequence[torch.Tensor],
        targets: torch.Tensor,
    ) -> None:
        """Write one pass's rows: per layer a ``[H, R, K']`` leaf, its gradient (None: no
        path to the targets, zero) and ``[R, K']`` visibility, with ``K' <= K`` (keys
        past K' are beyond every row of this pass); ``targets`` is ``[L, R]``.

        Each layer's entries of ``leaves`` and ``grads`` are set to None once written, so
        where the caller keeps no other reference they are freed layer by layer: the
        outputs' pages fill as the leaves and gradients go, instead of on top of them.
        """
        first, stop = tokens[0], tokens[-1] + 1
        shape = leaves[0].shape if leaves[0] is not None else None
        assert shape is not None, "fill() takes each pass's leaves once"
        heads, keys = shape[0], shape[-1]
        if self.gradients is None:
            self._allocate(heads)
        assert self.gradients is not None and self.attentions is not None
        gradients, attentions = torch.from_numpy(self.gradients), torch.from_numpy(self.attentions)
        raw = None if self.raw_gradients is None else torch.from_numpy(self.raw_gradients)
        for layer, seen in enumerate(visible):
            leaf, grad = leaves[layer], grads[layer]
            leaves[layer] = grads[layer] = None
            assert leaf is not None
            rows = gradients[first:stop, layer, :, :keys]  # [R, H, K']
            if grad is None:
                rows.zero_()
            else:
                rows.copy_(grad.detach().transpose(0, 1))
                rows.masked_fill_(~seen.cpu()[:, None, :], 0.0)
            if raw is not None:
                raw[first:stop, layer, :, :keys].copy_(rows)
            rows.relu_()
            attentions[first:stop, layer, :, :keys].copy_(leaf.detach().transpose(0, 1))
            del leaf, grad
        seen_by_any = torch.stack([seen.cpu() for seen in visible]).any(dim=0)
        # a token's text set is what any explained layer lets it see (Gemma 2 alternates
        # sliding-window and full layers)
        self.visible[first:stop, :keys] = seen_by_any.numpy()
        self.targets[:, first:stop] = targets.detach().float().cpu().numpy()
