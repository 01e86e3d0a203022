"""The explanation pass: one forward and one backward over the answer rows (METHOD.md §7).

The adapter's capture makes the answer rows of each explained layer's attention
autograd leaves and detaches every decoder layer's input; forward hooks read each
explained layer's output at the query rows; the logit-lens targets of all layers and
tokens are summed and differentiated once. Because each layer's input is detached and
attention is causal, the gradient on row q_t of layer l's leaf is exactly
d s^{l,t} / d A^l[q_t, :].

Where the adapter allows it (decoder self-attention), the prompt runs first without grad
into a KV cache (:mod:`dexar_core.prompt_cache`) and the forward with grad covers the
answer rows only; elsewhere (cross-attention) it covers the whole sequence. Both give the
same numbers: the prompt's keys and values are constants of the backward either way.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, cast

import numpy as np
import torch

from dexar_core.answer_arrays import AnswerArrays
from dexar_core.errors import DexarError, MethodError
from dexar_core.interfaces import GradientExtractor
from dexar_core.prompt_cache import PromptCache
from dexar_core.records import (
    AttentionGradients,
    DecoderParts,
    LoadedModel,
    TeacherForcedPass,
)
from dexar_core.values import VisualLayout


class LogitLensGradients(GradientExtractor):
    """Targets s^{l,t} = LMHead(FinalNorm(y^l[q_t]))[v_t], from the head's rows only.

    Only the explained tokens' rows of the output projection are used (a dot product per
    layer and token), never the full-vocabulary projection.
    """

    def logit_lens_targets(
        self, parts: DecoderParts, layer_outputs: torch.Tensor, token_ids: torch.Tensor
    ) -> torch.Tensor:
        """See :meth:`GradientExtractor.logit_lens_targets`."""
        hidden = layer_outputs
        if parts.final_norm is not None:
            hidden = parts.final_norm(hidden)
        hidden = hidden.float()
        if parts.output_scale is not None:
            hidden = hidden * parts.output_scale
        rows = parts.lm_head_weight[token_ids.to(parts.lm_head_weight.device)]
        targets = (hidden * rows.to(hidden.device).float()).sum(dim=-1)
        if parts.lm_head_bias is not None:
            bias = parts.lm_head_bias.reshape(-1)[token_ids.to(parts.lm_head_bias.device)]
            targets = targets + bias.to(targets.device).float()
        if parts.logit_softcap is not None:
            targets = torch.tanh(targets / parts.logit_softcap) * parts.logit_softcap
        return targets


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


def _record_outputs(
    parts: DecoderParts, layers: Sequence[int], rows: torch.Tensor, store: dict[int, torch.Tensor]
) -> ExitStack:
    stack = ExitStack()
    for index in layers:

        def hook(module: Any, args: Any, output: Any, index: int = index) -> None:
            hidden = parts.layer_output(output)
            store[index] = hidden[0, rows.to(hidden.device)]

        stack.callback(parts.layers[index].register_forward_hook(hook).remove)
    return stack


RECORD_NEEDS = ("raw_gradients", "full_attention", "full_gradients", "position_logits")
"""The needs that add records and change nothing of DEX-AR's pass (see :data:`NEEDS`)."""

NEEDS = (*RECORD_NEEDS, "doubled_final_norm")
"""What a method may ask of the engine beyond the answer rows (``Method.needs``):

- ``raw_gradients``: the signed gradients on the answer rows (before ReLU);
- ``full_attention``: every query row of the explained layers' attention (an extra
  forward without detaching, decoder self-attention only);
- ``full_gradients``: also the total derivative of the final-layer logit of each answer
  token with respect to those full matrices (one backward per answer token);
- ``position_logits``: the final-layer logits of the answer and context tokens at every
  key position (an extra forward, decoder self-attention only);
- ``doubled_final_norm``: the last decoder layer's logit-lens target applies the final
  norm twice, as the authors' released code does (METHOD.md §8b; ``official_compat``).
  It changes the targets, not what is recorded.
"""


def attention_gradients(
    loaded: LoadedModel,
    forced: TeacherForcedPass,
    layout: VisualLayout,
    layers: Sequence[int],
    *,
    chunk_size: int | None = None,
    needs: Collection[str] = (),
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
            runs exactly the one forward and one backward of METHOD.md §7.

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
    prompt = PromptCache.start(loaded, forced)
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
        stack.enter_context(_record_outputs(parts, layers, torch.tensor(rows), outputs))
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
        MethodError: the adapter's capture cannot give full matrices, or the explained
            attention is a cross-attention.
    """
    adapter, model = loaded.adapter, loaded.model
    capture_full = getattr(adapter.capture, "capture_full", None)
    if capture_full is None:
        raise MethodError(
            f"this method needs every row of the attention matrices, which the "
            f"{adapter.name!r} adapter's capture does not provide; use a method that reads "
            "the answer rows only (dexar, attention, attn_grad, legrad)."
        )
    parts = adapter.decoder_parts(model)
    last = parts.num_layers - 1
    rows = torch.tensor(list(forced.query_rows), dtype=torch.long)
    token_ids = torch.tensor(list(forced.answer_ids), dtype=torch.long)
    outputs: dict[int, torch.Tensor] = {}
    record: dict[str, np.ndarray] = {}
    with ExitStack() as stack:
        stack.enter_context(frozen_parameters(model))
        captured = stack.enter_context(capture_full(model, layers))
        stack.enter_context(_record_outputs(parts, [last], rows, outputs))
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
