"""Attention capture for transformers models, through ``AttentionInterface``.

During the explanation pass, the explained attention modules run through a function
registered with transformers' ``AttentionInterface``. It lets the model's own kernel
(SDPA or eager) compute the whole block, then recomputes only the answer query rows
explicitly, turns their post-softmax probabilities into autograd leaves, and puts the
rows computed from those leaves back into the output. A forward pre-hook detaches each
decoder layer's input, so the gradient of layer l's target reaches only layer l's leaf
(docs/method.md §7). Everything is restored on exit, also when the forward raises.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

import torch

from dexar_core.errors import DexarError, MethodError
from dexar_core.interfaces import AttentionCapture
from dexar_core.records import AttentionLeaves, DecoderParts

_PREFIX = "dexar|"
_ACTIVE: ContextVar[_CaptureState | None] = ContextVar("dexar_capture", default=None)


class _CaptureState:
    """Which modules to capture, their original implementations, and the leaves."""

    def __init__(self, leaves: AttentionLeaves, rows: torch.Tensor, full: bool = False) -> None:
        self.leaves = leaves
        self.rows = rows
        self.full = full  # every query row, differentiable through the whole model
        self.layer_of: dict[int, int] = {}
        self.original: dict[int, str] = {}  # by id(config): the implementation replaced


class InterposedState(Protocol):
    """What an interposing context keeps: the implementation it replaced, per config."""

    original: dict[int, str]


StateT = TypeVar("StateT", bound=InterposedState)


def _registered_name(prefix: str, function: Any, original: str) -> str:
    """Register (once) ``function`` under the name ``prefix + original``.

    The mask builder must see the original implementation's mask format, so each
    original (``sdpa``, ``eager``) gets its own registered name.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = prefix + original
    if name not in ALL_ATTENTION_FUNCTIONS:
        if original not in ALL_MASK_ATTENTION_FUNCTIONS:
            raise MethodError(
                f"dexar cannot capture attention of a model loaded with "
                f"attn_implementation={original!r}; load it with 'sdpa' or 'eager'."
            )
        AttentionInterface.register(name, function)
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])
    return name


def interpose_attention(
    restore: ExitStack, modules: Iterable[Any], state: InterposedState, prefix: str, function: Any
) -> None:
    """Route the attention of ``modules``' configs through ``function`` until ``restore`` closes.

    Each config's implementation is kept in ``state.original`` and replaced by a name
    registered for ``function``, which hands the calls on (:func:`delegated_attention`).

    Raises:
        DexarError: a config is already routed through ``prefix`` (no nesting).
    """
    for config in {id(module.config): module.config for module in modules}.values():
        original = config._attn_implementation or "eager"
        if original.startswith(prefix):
            raise DexarError(
                "dexar found an attention capture still installed on this model; "
                "captures cannot be nested."
            )
        state.original[id(config)] = original
        name = _registered_name(prefix, function, original)
        restore.callback(_set_implementation, config, config._attn_implementation)
        _set_implementation(config, name)


def delegated_attention(module: Any, state: StateT | None) -> tuple[StateT, Any]:
    """The interposing context's state and the attention function ``module``'s call goes to.

    Raises:
        DexarError: the call came outside the context that interposed it.
    """
    if state is None or id(module.config) not in state.original:
        raise DexarError(
            "dexar's capturing attention ran outside a capture; a previous capture was "
            "not restored. Reload the model."
        )
    return state, _original_function(module, state.original[id(module.config)])


def _original_function(module: Any, original: str) -> Any:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if original != "eager" and original in ALL_ATTENTION_FUNCTIONS:
        return ALL_ATTENTION_FUNCTIONS[original]
    model_eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    return model_eager if model_eager is not None else explicit_attention


def _repeat_heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    groups = heads // states.shape[1]
    return states if groups == 1 else states.repeat_interleave(groups, dim=1)


def _visible_keys(
    module: Any,
    attention_mask: torch.Tensor | None,
    rows: torch.Tensor,
    query_length: int,
    key_length: int,
    is_causal: bool | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Boolean ``[B|1, H|1, R, K]`` visibility and the additive mask rows, if any."""
    if attention_mask is None:
        causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        keys = torch.arange(key_length, device=rows.device)
        if causal:
            offset = key_length - query_length
            visible = keys[None, :] <= (rows[:, None] + offset)
        else:
            visible = torch.ones(rows.numel(), key_length, dtype=torch.bool, device=rows.device)
        return visible[None, None], None
    mask_rows = attention_mask[:, :, rows, :key_length]
    if mask_rows.dtype == torch.bool:
        return mask_rows, None
    visible = mask_rows > torch.finfo(mask_rows.dtype).min / 2
    return visible, mask_rows


def explicit_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention over every row, for models without an eager function."""
    rows = torch.arange(query.shape[2], device=query.device)
    probabilities, _ = _row_probabilities(module, query, key, attention_mask, scaling, rows, kwargs)
    values = _repeat_heads(value, query.shape[1])
    output = torch.matmul(probabilities.to(values.dtype), values)
    return output.transpose(1, 2).contiguous(), probabilities


def _row_probabilities(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
    rows: torch.Tensor,
    kwargs: dict[str, Any],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 post-softmax probabilities ``[B, H, R, K]`` of the query ``rows``."""
    heads = query.shape[1]
    keys = _repeat_heads(key, heads).float()
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query[:, :, rows].float(), keys.transpose(2, 3)) * scale
    softcap = kwargs.get("softcap")
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    position_bias = kwargs.get("position_bias")
    if position_bias is not None:
        scores = scores + position_bias[:, :, rows, : keys.shape[2]].float()
    visible, additive = _visible_keys(
        module, attention_mask, rows, query.shape[2], keys.shape[2], kwargs.get("is_causal")
    )
    if additive is not None:
        scores = scores + additive.float()
    scores = scores.masked_fill(~visible, torch.finfo(torch.float32).min)
    return torch.softmax(scores, dim=-1), visible


def _capturing_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    state, original = delegated_attention(module, _ACTIVE.get())
    output, weights = original(
        module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
    )
    layer = state.layer_of.get(id(module))
    if layer is None:
        return output, weights
    if state.full:
        return _full_rows(state, layer, module, query, key, value, attention_mask, scaling, kwargs)
    rows = state.rows.to(query.device)
    probabilities, visible = _row_probabilities(
        module, query.detach(), key.detach(), attention_mask, scaling, rows, kwargs
    )
    leaf = probabilities.detach()[0].requires_grad_(True)
    values = _repeat_heads(value, query.shape[1])
    row_output = torch.matmul(leaf.unsqueeze(0).to(values.dtype), values)
    output = output.index_copy(1, rows, row_output.transpose(1, 2).to(output.dtype))
    state.leaves.leaves[layer] = leaf
    state.leaves.visible[layer] = visible[0].amax(dim=0) if visible.shape[1] > 1 else visible[0, 0]
    return output, weights


def _full_rows(
    state: _CaptureState,
    layer: int,
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
    kwargs: dict[str, Any],
) -> tuple[torch.Tensor, Any]:
    """Every row explicitly, from the live query and key, so gradients flow everywhere.

    The zero leaf makes the probabilities part of the graph even where nothing upstream
    requires grad (frozen parameters), so ``autograd.grad`` can take them as inputs and
    the derivative includes every later layer's dependence on them.
    """
    rows = torch.arange(query.shape[2], device=query.device)
    probabilities, visible = _row_probabilities(
        module, query, key, attention_mask, scaling, rows, kwargs
    )
    probabilities = probabilities[0] + torch.zeros_like(probabilities[0], requires_grad=True)
    values = _repeat_heads(value, query.shape[1])
    output = torch.matmul(probabilities.unsqueeze(0).to(values.dtype), values)
    state.leaves.leaves[layer] = probabilities
    state.leaves.visible[layer] = visible[0].amax(dim=0) if visible.shape[1] > 1 else visible[0, 0]
    return output.transpose(1, 2).contiguous(), None


def _detach_first_input(
    module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args:
        return (args[0].detach(), *args[1:]), kwargs
    if "hidden_states" in kwargs:
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"].detach()}
    raise DexarError(
        f"dexar cannot find the hidden states among the inputs of {type(module).__name__}; "
        "the adapter's decoder_parts() must name the decoder layers."
    )


class TransformersAttentionCapture(AttentionCapture):
    """The generic capture for models whose attention goes through ``AttentionInterface``.

    Args:
        parts_of: callable giving the model's :class:`DecoderParts`.
    """

    def __init__(self, parts_of: Any) -> None:
        self._parts_of = parts_of

    @contextmanager
    def capture(
        self, model: Any, layers: Sequence[int], query_rows: Sequence[int]
    ) -> Iterator[AttentionLeaves]:
        """See :meth:`AttentionCapture.capture`."""
        state = _CaptureState(
            AttentionLeaves(layers=tuple(layers), query_rows=tuple(query_rows)),
            torch.tensor(list(query_rows), dtype=torch.long),
        )
        with self._installed(model, layers, state, detach_layer_inputs=True) as leaves:
            yield leaves

    @contextmanager
    def capture_full(self, model: Any, layers: Sequence[int]) -> Iterator[AttentionLeaves]:
        """Capture every query row of ``layers``' attention during one forward.

        Unlike :meth:`capture`, no layer input is detached and the probabilities are not
        cut from the graph: they are intermediate tensors (``AttentionLeaves.leaves``,
        ``[H, Q, K]``) whose gradients are total derivatives, as attention rollout and
        Chefer et al.'s relevance propagation need.
        """
        state = _CaptureState(
            AttentionLeaves(layers=tuple(layers), query_rows=()),
            torch.zeros(0, dtype=torch.long),
            full=True,
        )
        with self._installed(model, layers, state, detach_layer_inputs=False) as leaves:
            yield leaves

    @contextmanager
    def _installed(
        self,
        model: Any,
        layers: Sequence[int],
        state: _CaptureState,
        *,
        detach_layer_inputs: bool,
    ) -> Iterator[AttentionLeaves]:
        parts: DecoderParts = self._parts_of(model)
        leaves = state.leaves
        wanted = set(layers)
        with ExitStack() as restore:
            token = _ACTIVE.set(state)
            restore.callback(_ACTIVE.reset, token)
            interpose_attention(restore, parts.attentions, state, _PREFIX, _capturing_attention)
            for index in wanted:
                state.layer_of[id(parts.attentions[index])] = index
            for layer in parts.layers if detach_layer_inputs else ():
                handle = layer.register_forward_pre_hook(_detach_first_input, with_kwargs=True)
                restore.callback(handle.remove)
            yield leaves


def _set_implementation(config: Any, name: str) -> None:
    config._attn_implementation = name
