"""The straightforward DEX-AR gradients, computed as the definition reads.

For every answer token t: a forward over the prefix (prompt + the first t answer
tokens) with eager attention everywhere, then for every layer l one
``torch.autograd.grad`` of the full-vocabulary logit-lens logit s^{l,t} with respect to
that layer's attention probabilities, keeping the last row, and zero where the layer's
own attention mask hides the key from that row (a sliding window, padding). T forwards
and T*L backwards: slow on purpose, the yardstick the one-pass engine must match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dexar_core.records import LoadedModel, PreparedPrompt


def naive_attention_gradients(
    loaded: LoadedModel,
    prepared: PreparedPrompt,
    answer_ids: Sequence[int],
    layers: Sequence[int],
) -> np.ndarray:
    """``[T, L, H, K]`` float32 ReLU'd gradients, zero beyond each token's prefix.

    Args:
        loaded: model, processor and adapter.
        prepared: the prompt inputs.
        answer_ids: the explained answer tokens.
        layers: decoder layers to differentiate.
    """
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
            handles = []
            for index in layers:

                def keep(module, args, kwargs, out, i=index, seen=probabilities, hidden=masks):
                    seen[i] = parts.attention_probabilities(out)
                    hidden[i] = kwargs.get("attention_mask")

                handles.append(
                    parts.attentions[index].register_forward_hook(keep, with_kwargs=True)
                )
                handles.append(
                    parts.layers[index].register_forward_hook(
                        lambda m, a, out, i=index, store=outputs: store.__setitem__(
                            i, parts.layer_output(out)
                        )
                    )
                )
            try:
                with torch.enable_grad():
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
                        (grad,) = torch.autograd.grad(
                            logits[int(token)], probabilities[index], retain_graph=True
                        )
                        row = torch.relu(grad[0, :, query].float())
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
