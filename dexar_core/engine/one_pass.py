"""The explanation pass: one forward and one backward over the answer rows (docs/method.md §7).

The adapter's capture makes the answer rows of each explained layer's attention
autograd leaves and detaches every decoder layer's input; forward hooks read each
explained layer's output at the query rows; the logit-lens targets of all layers and
tokens are summed and differentiated once. Because each layer's input is detached and
attention is causal, the gradient on row q_t of layer l's leaf is exactly
d s^{l,t} / d A^l[q_t, :].

Where the adapter allows it (decoder self-attention), the prompt runs first without grad
into a KV cache (:mod:`dexar_core.engine.prompt_cache`) and the forward with grad covers the
answer rows only; elsewhere (cross-attention) it covers the whole sequence. Both give the
same numbers: the prompt's keys and values are constants of the backward either way.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import ExitStack
from typing import Any, cast

import torch

from dexar_core.engine.answer_arrays import AnswerArrays
from dexar_core.engine.full_records import full_attention_record, position_logit_record
from dexar_core.engine.layers import frozen_parameters, record_layer_outputs
from dexar_core.engine.prompt_cache import PromptCache
from dexar_core.errors import DexarError, MethodError
from dexar_core.records import (
    AttentionGradients,
    LoadedModel,
    PromptPrefill,
    TeacherForcedPass,
)
from dexar_core.values import VisualLayout

RECORD_NEEDS = ("raw_gradients", "full_attention", "full_gradients", "position_logits")
"""The needs that add records and change nothing of DEX-AR's pass (see :data:`NEEDS`)."""

NEEDS = (*RECORD_NEEDS, "doubled_final_norm", "mean_token_target")
"""What a method may ask of the engine beyond the answer rows (``Method.needs``):

- ``raw_gradients``: the signed gradients on the answer rows (before ReLU);
- ``full_attention``: every query row of the explained layers' attention (an extra
  forward without detaching, decoder self-attention only);
- ``full_gradients``: also the total derivative of the final-layer logit of each answer
  token with respect to those full matrices (one backward per answer token);
- ``position_logits``: the final-layer logits of the answer and context tokens at every
  key position (an extra forward, decoder self-attention only);
- ``doubled_final_norm``: the last decoder layer's logit-lens target applies the final
  norm twice, as the authors' released code does (docs/method.md §9; ``official_compat``).
  It changes the targets, not what is recorded;
- ``mean_token_target``: a contrastive pass's per-layer target pools the mean over all
  tokens, LeGrad's (``legrad``; docs/baselines.md). A method asks for it before it
  knows the model kind, and a decoder's logit lens pools nothing, so this pass accepts
  it and changes nothing.
"""


def attention_gradients(
    loaded: LoadedModel,
    forced: TeacherForcedPass,
    layout: VisualLayout,
    layers: Sequence[int],
    *,
    chunk_size: int | None = None,
    needs: Collection[str] = (),
    prefill: PromptPrefill | None = None,
) -> AttentionGradients:
    """Run the explanation pass and return the per-token, per-layer attention gradients.

    Args:
        loaded: model, processor and adapter.
        forced: the teacher-forced inputs and query rows.
        layout: the visual layout over the explained attention's key sequence.
        layers: decoder layer indices to explain.
        chunk_size: explain at most this many answer tokens per pass (several passes of
            fewer leaves bound the memory of long answers); None explains all at once.
        needs: extra records the method needs, from :data:`NEEDS`; none (the default)
            runs exactly the one forward and one backward of docs/method.md §7.
        prefill: the prompt's keys and values from the free run's generation
            (``ExplainedUnits.prefill``); the prompt cache starts from them instead of
            running the prompt again, where they were computed from ``forced.prompt_inputs``.

    Returns:
        The gradients, realised attentions and targets for every answer token.
    """
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown:
        raise MethodError(f"unknown method needs {unknown}; the engine provides {NEEDS}.")
    if layout.sequence_length != forced.key_length:
        raise DexarError(
            f"the visual layout covers {layout.sequence_length} keys but the explained "
            f"attention has {forced.key_length}; the adapter's locator and teacher_forced "
            "disagree."
        )
    total = len(forced.query_rows)
    if total == 0:
        raise MethodError("the answer has no token to explain; give at least one answer token.")
    size = total if chunk_size is None else int(chunk_size)
    if size < 1:
        raise MethodError(f"chunk_size must be a positive int or None, got {chunk_size!r}.")
    arrays = AnswerArrays(total, len(layers), forced.key_length, raw="raw_gradients" in needs)
    prompt = PromptCache.start(loaded, forced, prefill)
    for start in range(0, total, size):
        tokens = list(range(start, min(start + size, total)))
        if prompt is None:
            rows = [forced.query_rows[t] for t in tokens]
            module, inputs = loaded.model, forced.inputs
        else:
            module = prompt.module
            inputs, rows = prompt.rows(tokens)
        _answer_pass(
            loaded,
            module,
            inputs,
            rows,
            forced,
            tokens,
            layers,
            arrays,
            doubled_final_norm="doubled_final_norm" in needs,
        )
    assert arrays.gradients is not None and arrays.attentions is not None
    extras: dict[str, Any] = {"raw_gradients": arrays.raw_gradients}
    if "full_attention" in needs or "full_gradients" in needs:
        extras.update(
            full_attention_record(loaded, forced, layers, gradients="full_gradients" in needs)
        )
    if "position_logits" in needs:
        extras.update(position_logit_record(loaded, forced))
    return AttentionGradients(
        gradients=arrays.gradients,
        attentions=arrays.attentions,
        targets=arrays.targets,
        visible=arrays.visible,
        layers=tuple(layers),
        layout=layout,
        answer_ids=forced.answer_ids,
        query_rows=forced.query_rows,
        **extras,
    )


def _answer_pass(
    loaded: LoadedModel,
    module: Any,
    inputs: Mapping[str, Any],
    rows: list[int],
    forced: TeacherForcedPass,
    tokens: list[int],
    layers: Sequence[int],
    arrays: AnswerArrays,
    *,
    doubled_final_norm: bool = False,
) -> None:
    """One forward of ``module`` over ``inputs`` and one backward; ``rows`` are the query
    rows of ``tokens`` within that forward. Fills ``arrays``.

    With ``doubled_final_norm`` the last decoder layer's output goes through the final
    norm before the logit lens, which applies it again (the released code's quirk)."""
    adapter, model = loaded.adapter, loaded.model
    parts = adapter.decoder_parts(model)
    token_ids = torch.tensor([forced.answer_ids[t] for t in tokens], dtype=torch.long)
    outputs: dict[int, torch.Tensor] = {}
    with ExitStack() as stack:
        stack.enter_context(frozen_parameters(model))
        captured = stack.enter_context(adapter.capture.capture(model, layers, rows))
        stack.enter_context(record_layer_outputs(parts, layers, torch.tensor(rows), outputs))
        stack.enter_context(torch.enable_grad())
        module(**inputs)
        missing = [
            index for index in layers if index not in captured.leaves or index not in outputs
        ]
        if missing:
            raise DexarError(
                f"the forward pass did not run the attention of layers {missing}; the "
                f"adapter {adapter.name!r} names modules the model does not call."
            )
        last = parts.num_layers - 1
        if doubled_final_norm and last in outputs and parts.final_norm is not None:
            outputs[last] = parts.final_norm(outputs[last])
        hidden = torch.stack([outputs[index] for index in layers])
        targets = adapter.gradients.logit_lens_targets(parts, hidden, token_ids)
        leaves = [captured.leaves.pop(index) for index in layers]
        grads = list(torch.autograd.grad(targets.sum(), leaves, allow_unused=True))
    # Drop the graph (it holds the leaves) so that fill() holds the only references and
    # frees each layer's leaf and gradient once written: the outputs fill as they empty.
    targets = targets.detach()
    del hidden
    outputs.clear()
    arrays.fill(
        tokens,
        cast(list[torch.Tensor | None], leaves),
        cast(list[torch.Tensor | None], grads),
        [captured.visible[index] for index in layers],
        targets,
    )
