"""Relevance carried back through an encoder's self-attention (docs/method.md §8.1).

An encoder-decoder's explained attention is the decoder's cross-attention to the encoder
*outputs*; the encoder's self-attention has already mixed every position with every
other, so the relevance the method gives an encoder output position says little about
the image input at that position. With ``through_encoder`` (an option of
:class:`dexar_core.hf.encoder_decoder.HFEncoderDecoderAdapter`) the relevance over V is
carried back to the encoder's **input** positions through a relevance matrix ``R``
(``K x K`` over the encoder sequence, rows: outputs, columns: inputs):

- ``"rollout"``: ``R = Ahat_L ... Ahat_1`` with ``Ahat_l = (I + mean_h A_l) / 2``, rows
  renormalised (Abnar & Zuidema 2020). Every row sums to one: relevance is conserved over
  the encoder's input positions. The probabilities are recorded in the explanation's own
  forward (one extra ``Q K^T`` softmax per encoder layer, no extra model call).
- ``"gradient"``: ``R = (I + Abar_L) ... (I + Abar_1)`` with
  ``Abar_l = mean_h ReLU(A_l * dS/dA_l)`` and S the sum of the answer tokens' final
  logits (Chefer et al. 2021's rule for self-attention), then ``I + N(R - I)`` with N
  normalising each row to sum to one (their normalisation). It needs the gradient of S,
  so it costs one extra forward and backward per explanation.

The projection onto the image is the rows and columns of ``R`` at V: the encoder input
at a visual position is that grid cell's image token. It becomes the layout's
:class:`~dexar_core.values.RelevanceProjection`, which ``dexar.explain`` applies to the
raw relevance of every method and records in the Explanation's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from dexar_core.engine.layers import frozen_parameters, record_layer_outputs
from dexar_core.engine.logit_lens import LogitLensGradients
from dexar_core.errors import DexarError, MethodError
from dexar_core.hf.capture import delegated_attention, explicit_attention, interpose_attention
from dexar_core.interfaces import GradientRequest
from dexar_core.records import AttentionGradients, LoadedModel
from dexar_core.values import RelevanceProjection, VisualLayout

if TYPE_CHECKING:
    from dexar_core.records import TeacherForcedPass

THROUGH_ENCODER = ("none", "rollout", "gradient")
"""How relevance over the encoder outputs reaches the encoder inputs: not at all (the
paper's reading, the default), by attention rollout, or by gradient-weighted heads."""

_PREFIX = "dexar-encoder|"


def check_through_encoder(value: Any, who: str) -> str:
    """``value`` when it is one of :data:`THROUGH_ENCODER`.

    Raises:
        MethodError: any other value, naming the allowed ones.
    """
    if value not in THROUGH_ENCODER:
        raise MethodError(
            f"{who}: through_encoder must be one of {list(THROUGH_ENCODER)}, got {value!r}; "
            "'none' explains the encoder outputs as they are (docs/encoder_decoder.md)."
        )
    return str(value)


# --- the relevance matrices (plain arrays, float64) --------------------------------------


def rollout_relevance(attentions: Sequence[np.ndarray], length: int) -> np.ndarray:
    """``R = Ahat_L ... Ahat_1``, ``Ahat_l = (I + mean_h A_l) / 2`` rows renormalised.

    Args:
        attentions: per encoder layer, first layer first, ``[H, K, K]`` probabilities.
        length: K, the encoder sequence's length.

    Returns:
        ``[K, K]``: row i is how encoder output i's relevance splits over the inputs.
    """
    relevance = np.eye(length)
    for attention in attentions:
        mixed = (np.eye(length) + np.asarray(attention, dtype=np.float64).mean(axis=0)) / 2
        mixed /= mixed.sum(axis=-1, keepdims=True)
        # the output of layer l reads layer l's input: later layers multiply on the left
        relevance = mixed @ relevance
    return relevance


def gradient_relevance(
    attentions: Sequence[np.ndarray], gradients: Sequence[np.ndarray], length: int
) -> np.ndarray:
    """``Rbar = I + N(R - I)``, ``R = (I + Abar_L) ... (I + Abar_1)``.

    ``Abar_l = mean_h ReLU(A_l * dS/dA_l)``, and N scales each row to sum to one (a row
    that is all zero stays zero): what the encoder mixed in weighs as much as what a
    position keeps, whatever the gradients' scale (Chefer et al. 2021's normalisation).

    Args:
        attentions: per encoder layer, first layer first, ``[H, K, K]`` probabilities.
        gradients: the gradients of the target with respect to them, same shapes.
        length: K, the encoder sequence's length.

    Returns:
        ``[K, K]`` relevance from encoder outputs (rows) to inputs (columns): rows sum to
        2, or to 1 where no gradient reaches the row (there it is the identity's row).
    """
    relevance = np.eye(length)
    for attention, gradient in zip(attentions, gradients, strict=True):
        weighted = np.asarray(attention, np.float64) * np.asarray(gradient, np.float64)
        relevance = relevance + np.maximum(weighted, 0.0).mean(axis=0) @ relevance
    mixed = relevance - np.eye(length)
    totals = mixed.sum(axis=-1, keepdims=True)
    return np.eye(length) + np.divide(mixed, totals, out=np.zeros_like(mixed), where=totals > 0)


def encoder_projection(
    layout: VisualLayout, relevance: np.ndarray, *, kind: str, details: dict[str, Any]
) -> RelevanceProjection:
    """The projection from V (encoder outputs) to V's encoder inputs, the grid cells.

    A layout that already projects V elsewhere (its own ``projection``) gets the
    composition: encoder outputs -> encoder inputs -> that projection's units.
    """
    visual = layout.visual_positions
    weights = relevance[np.ix_(visual, visual)]
    facts = {
        "kind": kind,
        "source": "encoder self-attention, encoder outputs x encoder inputs",
        # the relevance of a visual output that reaches text or unplaced inputs is lost
        "image_input_share": float(weights.sum() / max(relevance[visual].sum(), 1e-30)),
        "extension": "not in the DEX-AR paper (docs/method.md §8.1)",
        **details,
    }
    if layout.projection is not None:
        inner = layout.projection
        return RelevanceProjection(
            name=f"encoder_self_attention_{kind}+{inner.name}",
            weights=weights @ inner.weights.astype(np.float64),
            grids=inner.grids,
            details={**facts, "then": inner.describe()},
        )
    # units are V's indices: grid cell positions renumbered from encoder positions
    grids = [
        attrs.evolve(grid, positions=np.searchsorted(visual, grid.positions))
        for grid in layout.grids
    ]
    return RelevanceProjection(
        name=f"encoder_self_attention_{kind}", weights=weights, grids=grids, details=facts
    )


# --- recording the encoder's attention probabilities --------------------------------------


class _Recording:
    """Which modules are encoder self-attention layers, and what they computed."""

    def __init__(self, modules: Sequence[Any], differentiable: bool) -> None:
        self.layer_of = {id(module): index for index, module in enumerate(modules)}
        self.differentiable = differentiable
        self.original: dict[int, str] = {}  # by id(config): the implementation replaced
        self.probabilities: dict[int, torch.Tensor] = {}

    def attentions(self) -> list[torch.Tensor]:
        """``[B, H, K, K]`` per encoder layer, first layer first."""
        missing = sorted(set(self.layer_of.values()) - set(self.probabilities))
        if missing:
            raise DexarError(
                f"the forward pass did not run the encoder self-attention of layers "
                f"{missing}; the adapter's encoder_self_attentions() names modules the "
                "model does not call."
            )
        return [self.probabilities[index] for index in range(len(self.layer_of))]


_RECORDING: ContextVar[_Recording | None] = ContextVar("dexar_encoder_recording", default=None)


def _recording_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    state, original = delegated_attention(module, _RECORDING.get())
    call = (module, query, key, value, attention_mask)
    layer = state.layer_of.get(id(module))
    if layer is None or (layer in state.probabilities and not state.differentiable):
        return original(*call, **kwargs)
    if not state.differentiable:
        # the model's own output, so the explanation's numbers stay exactly today's
        output, weights = original(*call, **kwargs)
        with torch.no_grad():
            _, probabilities = explicit_attention(*call, **kwargs)
        state.probabilities[layer] = probabilities
        return output, weights
    _, probabilities = explicit_attention(*call, **kwargs)
    # A zero leaf puts the probabilities in the graph although no parameter requires
    # grad; the output is computed from them, so dS/dA is the total derivative.
    probabilities = probabilities + torch.zeros_like(probabilities, requires_grad=True)
    values = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
    output = torch.matmul(probabilities.to(values.dtype), values)
    state.probabilities[layer] = probabilities  # the tensor the output is computed from
    return output.transpose(1, 2).contiguous(), probabilities


@contextmanager
def recorded_encoder_attention(
    modules: Sequence[Any], *, differentiable: bool
) -> Iterator[_Recording]:
    """Record the encoder self-attention probabilities of the forwards run inside.

    Without ``differentiable`` the model's outputs are its own and only the first
    forward's probabilities are kept (detached); with it each layer's output is computed
    from its recorded probabilities, which are part of the autograd graph.
    Everything is restored on exit, also when the forward raises.
    """
    state = _Recording(modules, differentiable)
    with ExitStack() as restore:
        token = _RECORDING.set(state)
        restore.callback(_RECORDING.reset, token)
        interpose_attention(restore, modules, state, _PREFIX, _recording_attention)
        yield state


# --- the gradient extractor that adds the projection -------------------------------------


class ThroughEncoderGradients(LogitLensGradients):
    """The logit-lens pass, and the projection of V back through the encoder.

    Args:
        route: ``"rollout"`` or ``"gradient"`` (:data:`THROUGH_ENCODER`).
    """

    def __init__(self, route: str) -> None:
        self.route = route

    def attention_gradients(self, request: GradientRequest) -> AttentionGradients:
        """See :meth:`LogitLensGradients.attention_gradients`; the layout gains the projection."""
        loaded, prepared = request.loaded, request.prepared
        adapter = loaded.adapter
        modules = adapter.encoder_self_attentions(loaded.model)
        rollout = self.route == "rollout"
        with (
            recorded_encoder_attention(modules, differentiable=False) if rollout else nullcontext()
        ) as recording:
            record = super().attention_gradients(request)
        length = record.layout.sequence_length
        if recording is not None:
            attentions = [a[0].double().cpu().numpy() for a in recording.attentions()]
            relevance = rollout_relevance(attentions, length)
            details: dict[str, Any] = {"rule": "R = prod_l (I + mean_h A_l) / 2, rows sum to 1"}
        else:
            forced = adapter.teacher_forced(loaded, prepared, request.units.ids)
            attentions, gradients = self._target_gradients(loaded, forced, modules)
            relevance = gradient_relevance(attentions, gradients, length)
            details = {
                "rule": "I + N(R - I), R = prod_l (I + mean_h ReLU(A_l * dS/dA_l))",
                "target": "S, the sum of the answer tokens' final logits",
            }
        details["encoder_layers"] = len(attentions)
        if attentions:
            details["heads"] = int(attentions[0].shape[0])
        projection = encoder_projection(record.layout, relevance, kind=self.route, details=details)
        return attrs.evolve(record, layout=attrs.evolve(record.layout, projection=projection))

    def _target_gradients(
        self, loaded: LoadedModel, forced: TeacherForcedPass, modules: Sequence[Any]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One forward and backward: the encoder's probabilities and dS/dA.

        S is the sum of the answer tokens' final logits, read as the last decoder
        layer's logit-lens targets (the head's rows of the answer tokens only).
        """
        if not modules:  # an encoder without self-attention mixes nothing: R is the identity
            return [], []
        model = loaded.model
        parts = loaded.adapter.decoder_parts(model)
        last = parts.num_layers - 1
        outputs: dict[int, torch.Tensor] = {}
        with (
            torch.enable_grad(),
            frozen_parameters(model),
            recorded_encoder_attention(modules, differentiable=True) as recording,
            record_layer_outputs(parts, [last], torch.tensor(forced.query_rows), outputs),
        ):
            model(**forced.inputs)
            token_ids = torch.tensor(forced.answer_ids, dtype=torch.long)
            target = self.logit_lens_targets(parts, outputs[last][None], token_ids).sum()
            attentions = recording.attentions()
            gradients = torch.autograd.grad(target, attentions, allow_unused=True)
        return (
            [attention[0].detach().double().cpu().numpy() for attention in attentions],
            [
                np.zeros(attention.shape[1:])
                if gradient is None
                else gradient[0].double().cpu().numpy()
                for attention, gradient in zip(attentions, gradients, strict=True)
            ],
        )
