"""Attention capture in open_clip's vision transformer, through module hooks.

open_clip's source is never edited and nothing is monkey-patched: every change is a
hook handle removed on exit, also when the forward raises.

- A forward pre-hook on every residual block detaches the block's input, so the
  gradient of layer l's target reaches only layer l's attention (docs/method.md §7).
- A forward hook on each explained block's attention module recomputes the attention
  explicitly from the module's own weights (``nn.MultiheadAttention`` in open_clip's
  default ``ResidualAttentionBlock``, open_clip's ``Attention`` in the custom block):
  the captured query rows' post-softmax probabilities become autograd leaves (float32,
  or the model's dtype when wider),
  copied once per prompt (``copies``), and the module's output is replaced by the one
  computed from those leaves. The output has one batch entry per copy.
- A forward hook on each explained block records its (per-copy) output for the
  per-layer targets and hands the first copy on, so the rest of the forward, and the
  model's final embedding, are what they would have been without capture.

Copying the leaves per prompt is what lets one backward pass give every prompt its own
gradient while the image is encoded once: only the explained blocks' attention output
and MLP run once per prompt, on a detached input.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from dexar_core.errors import InputError, MethodError, UnsupportedModelError
from dexar_core.interfaces import AttentionCapture
from dexar_core.records import AttentionLeaves
from dexar_open_clip.adapter import vision_tower


@attrs.define(kw_only=True)
class VisionLeaves(AttentionLeaves):
    """What :class:`VisionAttentionCapture` fills during one forward of the image tower.

    Attributes:
        leaves: per explained layer, ``[copies, H, R, K]`` autograd leaves (float32 or
            wider).
        visible: per explained layer, ``[R, K]`` bool, the keys each row may attend to.
        layer_outputs: per explained layer, ``[copies, K, D]`` the block's output y^l,
            computed from that copy's leaves.
        probabilities: per explained layer, ``[H, R, K]`` the realised probabilities.
    """

    layer_outputs: dict[int, Any] = attrs.field(factory=dict)
    probabilities: dict[int, Any] = attrs.field(factory=dict)


class VisionAttentionCapture(AttentionCapture):
    """Attention leaves of open_clip ViT residual blocks (see the module docstring)."""

    @contextmanager
    def capture(
        self,
        model: Any,
        layers: Sequence[int],
        query_rows: Sequence[int] | None = None,
        *,
        copies: int = 1,
    ) -> Iterator[VisionLeaves]:
        """Capture rows ``query_rows`` (all rows when None) of ``layers`` in one forward.

        Args:
            model: an open_clip model with a ViT image tower.
            layers: indices of the residual blocks to explain.
            query_rows: token positions whose attention rows become leaves.
            copies: how many independent copies of the leaves (one per prompt).

        Raises:
            UnsupportedModelError: the image tower is not a ViT, or an explained attention
                module has a form the explicit recomputation does not cover.
            MethodError: a layer, row or copy count out of range.
        """
        visual = vision_tower(model)
        blocks = visual.transformer.resblocks
        length = int(visual.positional_embedding.shape[0])
        rows = tuple(range(length)) if query_rows is None else tuple(int(r) for r in query_rows)
        _check(layers, len(blocks), rows, length, copies)
        record = VisionLeaves(layers=tuple(int(i) for i in layers), query_rows=rows)
        with ExitStack() as stack:
            for block in blocks:
                stack.callback(block.register_forward_pre_hook(_detach_block_input).remove)
            for index in record.layers:
                block = blocks[index]
                explicit = _explicit_attention(block.attn, index)
                attention_hook = partial(_attention_hook, explicit, record, index, rows, copies)
                stack.callback(
                    block.attn.register_forward_hook(attention_hook, with_kwargs=True).remove
                )
                block_hook = partial(_block_hook, record, index)
                stack.callback(block.register_forward_hook(block_hook).remove)
            yield record


def _check(
    layers: Sequence[int], num_layers: int, rows: tuple[int, ...], length: int, copies: int
) -> None:
    if not layers or any(not 0 <= int(i) < num_layers for i in layers):
        raise MethodError(
            f"layers {list(layers)} are not block indices of this vision transformer of "
            f"{num_layers} blocks; give 0..{num_layers - 1}."
        )
    if not rows or any(not 0 <= r < length for r in rows):
        raise MethodError(f"query rows {list(rows)} lie outside the {length} image tokens.")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise MethodError(f"copies must be a positive int (one per prompt), got {copies!r}.")


def _detach_block_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (args[0].detach(), *args[1:])


def _block_hook(record: VisionLeaves, index: int, module: Any, args: Any, output: Any) -> Any:
    record.layer_outputs[index] = output
    return output[:1]


class _ExplicitAttention:
    """Probabilities and output of one attention module, recomputed from its weights."""

    def __init__(self, module: Any, multihead: bool) -> None:
        self.module = module
        self.multihead = multihead
        self.heads = int(module.num_heads)

    def inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        """The attended sequence ``[B, K, D]`` and the attention mask of one call."""
        if not self.multihead:
            x = args[0] if args else kwargs["x"]
            return x, kwargs.get("attn_mask", args[1] if len(args) > 1 else None)
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs.get("key", query)
        value = args[2] if len(args) > 2 else kwargs.get("value", query)
        if key is not query or value is not query or kwargs.get("key_padding_mask") is not None:
            raise UnsupportedModelError(
                "the open_clip adapter explains self-attention over one token sequence; this "
                "block attends to another sequence or uses a key padding mask."
            )
        return query, kwargs.get("attn_mask")

    def probabilities(
        self, x: torch.Tensor, mask: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Probabilities ``[B, H, K, K]`` (float32 or wider), values, visible keys."""
        module = self.module
        batch, length, _ = x.shape
        projected = F.linear(x, module.in_proj_weight, module.in_proj_bias)
        q, k, v = (
            part.reshape(batch, length, self.heads, -1).transpose(1, 2)
            for part in projected.chunk(3, dim=-1)
        )
        # float32 at least, whatever the model's dtype (docs/method.md §5).
        exact = torch.promote_types(q.dtype, torch.float32)
        if not self.multihead and module.logit_scale is not None:
            scale = torch.clamp(module.logit_scale, max=module.logit_scale_max).exp()
            unit_q = F.normalize(q.to(exact), dim=-1)
            logits = unit_q @ F.normalize(k.to(exact), dim=-1).transpose(-1, -2) * scale.to(exact)
        else:
            if not self.multihead:
                q, k = module.ln_q(q), module.ln_k(k)
            logits = (q.to(exact) * q.shape[-1] ** -0.5) @ k.to(exact).transpose(-1, -2)
        if mask is not None:
            mask = mask if mask.ndim != 3 else mask.reshape(batch, self.heads, length, length)
            if mask.dtype == torch.bool:
                logits = logits.masked_fill(mask, float("-inf"))
            else:
                logits = logits + mask.to(exact)
        return logits.softmax(dim=-1), v, torch.isfinite(logits)

    def output(self, context: torch.Tensor) -> Any:
        """The module's output from the per-head context ``[B, H, K, d]``."""
        module = self.module
        batch, _, length, _ = context.shape
        if not self.multihead and module.head_scale is not None:
            context = context * module.head_scale
        merged = context.transpose(1, 2).reshape(batch, length, -1)
        if self.multihead:
            return (F.linear(merged, module.out_proj.weight, module.out_proj.bias), None)
        return module.out_drop(module.out_proj(module.ln_inner(merged)))


def _explicit_attention(module: Any, index: int) -> _ExplicitAttention:
    from open_clip.transformer import Attention

    if isinstance(module, torch.nn.MultiheadAttention):
        plain = (
            module._qkv_same_embed_dim
            and module.bias_k is None
            and not module.add_zero_attn
            and module.batch_first
        )
        if not plain:
            raise UnsupportedModelError(
                f"block {index}'s nn.MultiheadAttention uses separate key/value sizes, "
                "bias_k/bias_v, zero attention or a sequence-first layout, which the "
                "open_clip adapter does not recompute; open_clip's ViTs use none of them."
            )
        return _ExplicitAttention(module, multihead=True)
    if isinstance(module, Attention):
        return _ExplicitAttention(module, multihead=False)
    raise UnsupportedModelError(
        f"block {index}'s attention is {type(module).__name__}; the open_clip adapter "
        "recomputes nn.MultiheadAttention and open_clip.transformer.Attention."
    )


def _attention_hook(
    explicit: _ExplicitAttention,
    record: VisionLeaves,
    index: int,
    rows: tuple[int, ...],
    copies: int,
    module: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    output: Any,
) -> Any:
    x, mask = explicit.inputs(args, kwargs)
    if x.shape[0] != 1:
        raise InputError(
            f"the open_clip capture explains one image per forward, got a batch of {x.shape[0]}."
        )
    probabilities, values, visible = explicit.probabilities(x, mask)
    row_index = torch.tensor(rows, device=x.device)
    selected = probabilities[:, :, row_index].detach()
    leaf = selected.expand(copies, -1, -1, -1).clone().requires_grad_(True)
    from_leaves = leaf.to(values.dtype) @ values
    if len(rows) == probabilities.shape[-2]:
        context = from_leaves
    else:
        realised = probabilities.detach().to(values.dtype) @ values
        context = realised.expand(copies, -1, -1, -1).clone()
        context[:, :, row_index] = from_leaves
    record.leaves[index] = leaf
    record.visible[index] = visible[0, 0, row_index]
    record.probabilities[index] = selected[0]
    return explicit.output(context)
