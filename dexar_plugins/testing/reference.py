"""The straightforward DEX-AR gradients, computed as the definition reads.

For every answer token t: a forward over the prefix (prompt + the first t answer
tokens) with eager attention everywhere, then for every layer l one
``torch.autograd.grad`` of the full-vocabulary logit-lens logit s^{l,t} with respect to
that layer's attention probabilities, keeping the last row, and zero where the layer's
own attention mask hides the key from that row (a sliding window, padding). T forwards
and T*L backwards: slow on purpose, the yardstick the one-pass engine must match.

The relevance variants of docs/method.md §13 come from the same autograd calls, not from
their formulas: ``"weighted_gradient"`` multiplies the gradient by the probabilities the
layer returned, and ``"score_gradient"`` differentiates with respect to the tensor the
layer's eager attention hands to ``softmax`` (its pre-softmax scores, mask included),
read by a ``TorchFunctionMode`` while that layer's attention module runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from dexar_core.records import LoadedModel, PreparedPrompt

RELEVANCES = ("attention_gradient", "score_gradient", "weighted_gradient")
"""The quantities :func:`naive_attention_gradients` computes (docs/method.md §13)."""


class _SoftmaxInputs(TorchFunctionMode):
    """Keeps the first tensor given to ``softmax`` while a chosen attention module runs."""

    def __init__(self) -> None:
        super().__init__()
        self.layer: int | None = None
        self.scores: dict[int, torch.Tensor] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.layer is not None and func in (F.softmax, torch.softmax, torch.Tensor.softmax):
            self.scores.setdefault(self.layer, args[0])
        return func(*args, **(kwargs or {}))


def naive_attention_gradients(
    loaded: LoadedModel,
    prepared: PreparedPrompt,
    answer_ids: Sequence[int],
    layers: Sequence[int],
    relevance: str = "attention_gradient",
) -> np.ndarray:
    """``[T, L, H, K]`` float32 ReLU'd gradients (or relevance), zero beyond each prefix.

    Args:
        loaded: model, processor and adapter.
        prepared: the prompt inputs.
        answer_ids: the explained answer tokens.
        layers: decoder layers to differentiate.
        relevance: ``"attention_gradient"`` (default: d s / d A, the paper's G),
            ``"weighted_gradient"`` (A * d s / d A) or ``"score_gradient"`` (d s / d
            scores, the softmax's input), each ReLU'd (docs/method.md §13).
    """
    if relevance not in RELEVANCES:
        raise ValueError(f"relevance must be one of {RELEVANCES}, got {relevance!r}.")
    adapter, model = loaded.adapter, loaded.model
    parts = adapter.decoder_parts(model)
    full = adapter.teacher_forced(loaded, prepared, answer_ids)
    rows = []
    configs = {id(attention.config): attention.config for attention in parts.attentions}
    previous = {key: config._attn_implementation for key, config in configs.items()}
    for config in configs.values():
        config._attn_implementation = "eager"
    try:
        for t, token in enumerate(answer_ids):
            prefix = adapter.teacher_forced(loaded, prepared, answer_ids[:t])
            query = full.query_rows[t]
            probabilities: dict[int, torch.Tensor] = {}
            masks: dict[int, torch.Tensor | None] = {}
            outputs: dict[int, torch.Tensor] = {}
            softmax_inputs = _SoftmaxInputs()
            handles = []
            for index in layers:
                attention = parts.attentions[index]
                handles.append(
                    attention.register_forward_pre_hook(
                        lambda m, a, i=index, mode=softmax_inputs: setattr(mode, "layer", i)
                    )
                )

                def keep(
                    module,
                    args,
                    kwargs,
                    out,
                    i=index,
                    seen=probabilities,
                    hidden=masks,
                    mode=softmax_inputs,
                ):
                    seen[i] = parts.attention_probabilities(out)
                    hidden[i] = kwargs.get("attention_mask")
                    mode.layer = None

                handles.append(attention.register_forward_hook(keep, with_kwargs=True))
                handles.append(
                    parts.layers[index].register_forward_hook(
                        lambda m, a, out, i=index, store=outputs: store.__setitem__(
                            i, parts.layer_output(out)
                        )
                    )
                )
            try:
                with torch.enable_grad():
                    # the mode sees every torch call: only where the scores are wanted
                    with softmax_inputs if relevance == "score_gradient" else nullcontext():
                        model(**prefix.inputs)
                    per_layer = []
                    for index in layers:
                        hidden = outputs[index][0, query]
                        if parts.final_norm is not None:
                            hidden = parts.final_norm(hidden)
                        if parts.output_scale is not None:
                            hidden = hidden * parts.output_scale
                        logits = hidden.float() @ parts.lm_head_weight.float().T
                        if parts.lm_head_bias is not None:
                            logits = logits + parts.lm_head_bias.reshape(-1).float()
                        if parts.logit_softcap is not None:
                            logits = torch.tanh(logits / parts.logit_softcap) * parts.logit_softcap
                        with_respect_to = (
                            softmax_inputs.scores[index]
                            if relevance == "score_gradient"
                            else probabilities[index]
                        )
                        (grad,) = torch.autograd.grad(
                            logits[int(token)], with_respect_to, retain_graph=True
                        )
                        row = grad[0, :, query].float()
                        if relevance == "weighted_gradient":
                            row = row * probabilities[index][0, :, query].detach().float()
                        row = torch.relu(row)
                        per_layer.append(row * _visible(masks[index], query, row.shape[-1]))
            finally:
                for handle in handles:
                    handle.remove()
            stacked = torch.stack(per_layer)
            padded = torch.zeros(*stacked.shape[:-1], full.key_length)
            padded[..., : stacked.shape[-1]] = stacked
            rows.append(padded)
    finally:
        for key, config in configs.items():
            config._attn_implementation = previous[key]
    return torch.stack(rows).numpy()


def _visible(mask: torch.Tensor | None, query: int, key_length: int) -> torch.Tensor:
    """1.0 at the keys the layer's mask lets row ``query`` see, 0.0 elsewhere, ``[K]``.

    Without a mask every key of the prefix is visible (the query is its last row).
    """
    if mask is None:
        return torch.ones(key_length)
    rows = mask[0, :, query if mask.shape[2] > 1 else 0, :key_length]
    visible = rows if rows.dtype == torch.bool else rows > torch.finfo(rows.dtype).min / 2
    return visible.any(dim=0).float()


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max |actual - expected| / max |expected|`` (0 when both are all zero)."""
    scale = float(np.abs(expected).max())
    diff = float(np.abs(actual - expected).max())
    return diff if scale == 0 else diff / scale
