"""Which layers are explained, frozen parameters, and hooks that read layer outputs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch

from dexar_core.errors import MethodError
from dexar_core.records import (
    DecoderParts,
)


@contextmanager
def frozen_parameters(model: Any) -> Iterator[None]:
    """Set ``requires_grad=False`` on every parameter, restoring the flags on exit."""
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def resolve_layers(layers: Any, num_layers: int) -> tuple[int, ...]:
    """The explained layer indices for a ``layers`` option.

    Args:
        layers: ``"all"``, a positive int k (the last k layers) or a sequence of indices
            (negative indices count from the end).
        num_layers: L, the decoder's layer count.

    Raises:
        MethodError: for an empty selection, a k larger than L or an index out of range.
    """
    if isinstance(layers, str):
        if layers == "all":
            return tuple(range(num_layers))
        if layers.startswith("last"):
            layers = int(layers.removeprefix("last").lstrip("_") or 0)
        else:
            raise MethodError(
                f"layers must be 'all', an int k (the last k layers) or a list of indices, "
                f"got {layers!r}."
            )
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        if not 1 <= layers <= num_layers:
            raise MethodError(
                f"layers={layers} asks for the last {layers} layers but the model has "
                f"{num_layers}; choose 1..{num_layers}."
            )
        return tuple(range(num_layers - int(layers), num_layers))
    chosen = []
    for index in layers:
        if not -num_layers <= int(index) < num_layers:
            raise MethodError(
                f"layer index {index} is out of range for a decoder of {num_layers} layers; "
                f"use 0..{num_layers - 1} (or negative indices from the end)."
            )
        chosen.append(int(index) % num_layers)
    if not chosen:
        raise MethodError("layers is empty; give at least one decoder layer to explain.")
    return tuple(sorted(set(chosen)))


def record_layer_outputs(
    parts: DecoderParts, layers: Sequence[int], rows: torch.Tensor, store: dict[int, torch.Tensor]
) -> ExitStack:
    """Forward hooks that store each layer's output at ``rows`` in ``store`` (removed on close)."""
    stack = ExitStack()
    for index in layers:

        def hook(module: Any, args: Any, output: Any, index: int = index) -> None:
            hidden = parts.layer_output(output)
            store[index] = hidden[0, rows.to(hidden.device)]

        stack.callback(parts.layers[index].register_forward_hook(hook).remove)
    return stack
