"""The records that need a second forward: full attention matrices and per-position logits."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import torch

from dexar_core.engine.layers import frozen_parameters, record_layer_outputs
from dexar_core.errors import MethodError
from dexar_core.records import (
    LoadedModel,
    TeacherForcedPass,
)


def _self_attention_only(loaded: LoadedModel, forced: TeacherForcedPass, queries: int) -> None:
    if queries != forced.key_length:
        raise MethodError(
            f"this method needs decoder self-attention over the whole sequence, but the "
            f"{loaded.adapter.name!r} adapter explains an attention with {queries} queries "
            f"over {forced.key_length} keys (cross-attention); use a method that reads the "
            "answer rows only (dexar, attention, attn_grad, legrad)."
        )


def full_attention_record(
    loaded: LoadedModel, forced: TeacherForcedPass, layers: Sequence[int], *, gradients: bool
) -> dict[str, np.ndarray]:
    """Every row of the explained layers' attention and, optionally, its total gradients.

    One forward with nothing detached; with ``gradients``, one backward per answer
    token of its final-layer logit z_t (the model's own logit of v_t at q_t).

    Returns:
        ``full_attentions`` ``[L, H, K, K]`` and, with ``gradients``, ``full_gradients``
        ``[T, L, H, K, K]``.

    Raises:
        MethodError: the adapter's capture cannot give full matrices
            (``AttentionCapture.capture_full``), or the explained attention is a
            cross-attention.
    """
    adapter, model = loaded.adapter, loaded.model
    parts = adapter.decoder_parts(model)
    last = parts.num_layers - 1
    rows = torch.tensor(list(forced.query_rows), dtype=torch.long)
    token_ids = torch.tensor(list(forced.answer_ids), dtype=torch.long)
    outputs: dict[int, torch.Tensor] = {}
    record: dict[str, np.ndarray] = {}
    with ExitStack() as stack:
        stack.enter_context(frozen_parameters(model))
        captured = stack.enter_context(adapter.capture.capture_full(model, layers))
        stack.enter_context(record_layer_outputs(parts, [last], rows, outputs))
        stack.enter_context(torch.enable_grad() if gradients else torch.no_grad())
        model(**forced.inputs)
        matrices = [captured.leaves[index] for index in layers]
        _self_attention_only(loaded, forced, matrices[0].shape[-2])
        # zero where a row cannot see the key, as on the answer rows
        visible = torch.stack([captured.visible[index] for index in layers]).float().cpu()
        record["full_attentions"] = (
            torch.stack([m.detach() for m in matrices]).float().cpu().numpy()
        )
        if gradients:
            logits = adapter.gradients.logit_lens_targets(parts, outputs[last][None], token_ids)[0]
            per_token = []
            for t in range(logits.shape[0]):
                grads = torch.autograd.grad(
                    logits[t], matrices, retain_graph=t + 1 < logits.shape[0], allow_unused=True
                )
                per_token.append(
                    torch.stack(
                        [torch.zeros_like(m) if g is None else g for g, m in zip(grads, matrices)]
                    )
                    .float()
                    .cpu()
                    * visible[:, None]
                )
            record["full_gradients"] = torch.stack(per_token).numpy()
    return record


def position_logit_record(
    loaded: LoadedModel, forced: TeacherForcedPass, class_chunk: int = 64
) -> dict[str, Any]:
    """The final-layer logits of the answer and context tokens at every key position.

    The classes are the answer tokens followed by the other distinct token ids of the
    key sequence; each logit comes from its class's row of the head only, as the targets.

    Returns:
        ``position_logits`` ``[C, K]``, ``logit_classes`` (C ids), ``sequence_ids`` ``[K]``.

    Raises:
        MethodError: the inputs hold no token ids for the key sequence (cross-attention,
            or a model fed with embeddings).
    """
    adapter, model = loaded.adapter, loaded.model
    ids = forced.inputs.get("input_ids")
    if ids is None or ids.shape[-1] != forced.key_length:
        raise MethodError(
            f"this method needs the token id of every key position, which the "
            f"{adapter.name!r} adapter's teacher-forced inputs do not give (the explained "
            "attention is not decoder self-attention over input_ids); use another method."
        )
    parts = adapter.decoder_parts(model)
    last = parts.num_layers - 1
    sequence_ids = ids[0].detach().cpu().long()
    classes = list(dict.fromkeys([*forced.answer_ids, *sequence_ids.tolist()]))
    outputs: dict[int, torch.Tensor] = {}

    def keep(module: Any, args: Any, output: Any) -> None:
        outputs[last] = parts.layer_output(output)[0]

    handle = parts.layers[last].register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(**forced.inputs)
    finally:
        handle.remove()
    _self_attention_only(loaded, forced, outputs[last].shape[0])
    with torch.no_grad():
        # [K, 1, D] against [C] classes broadcasts to [K, C] through the extractor
        hidden = outputs[last][:, None, :]
        chunks = [
            adapter.gradients.logit_lens_targets(
                parts, hidden, torch.tensor(classes[start : start + class_chunk])
            )
            for start in range(0, len(classes), class_chunk)
        ]
    return {
        "position_logits": torch.cat(chunks, dim=1).T.float().cpu().numpy(),
        "logit_classes": tuple(int(c) for c in classes),
        "sequence_ids": sequence_ids.numpy(),
    }
