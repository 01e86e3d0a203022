"""DEX-AR: dynamic head filtering and sequence-level token filtering (docs/method.md §3-6)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dexar_core.errors import MethodError
from dexar_core.heatmap import minmax
from dexar_core.methods.base import Method, MethodResult
from dexar_core.records import AttentionGradients
from dexar_core.values import VisualLayout

HEAD_AGGREGATIONS = ("max", "topk_mean", "mean")
TEXT_SETS = ("all_non_visual", "prompt_only")
TOKEN_SCORES = ("max_gradient", "attention_weighted", "visual_share")
"""How ``delta^t`` is scored: the paper's, and two variants measured in docs/results.md."""
RELEVANCES = ("attention_gradient", "score_gradient", "weighted_gradient")
"""What the head weights, maps and delta read in place of G (docs/method.md §13)."""


def relevance_quantity(record: AttentionGradients, relevance: str) -> np.ndarray:
    """The non-negative ``[T, L, H, K]`` float32 quantity DEX-AR reads, per docs/method.md §13.

    ``"attention_gradient"`` is the paper's ``G = ReLU(dS/dA)``; ``"weighted_gradient"``
    is ``ReLU(A * dS/dA) = A * G`` (A is non-negative, so the signed gradients are not
    needed); ``"score_gradient"`` is ``ReLU(A * (g - sum_k A_k g_k))`` with ``g`` the
    signed gradients and the sum over the keys the row sees: the derivative with respect
    to the pre-softmax score, which the softmax passes back.

    Args:
        record: the engine's record; ``"score_gradient"`` reads ``raw_gradients``.
        relevance: one of :data:`RELEVANCES`.

    Raises:
        MethodError: an unknown relevance, a record without the signed gradients, or a
            record whose rows are means over several query rows (a product of means is
            not the mean of the products).
    """
    if relevance not in RELEVANCES:
        raise MethodError(f"relevance must be one of {RELEVANCES}, got {relevance!r}.")
    gradients = record.gradients.astype(np.float32, copy=False)
    if relevance == "attention_gradient":
        return gradients
    if record.averaged_rows != 1:
        raise MethodError(
            f"relevance={relevance!r} multiplies each row's attention by its gradient, but "
            f"this record's rows are means over {record.averaged_rows} query rows (a "
            "contrastive model that pools every token), and a product of means is not "
            "the mean of the products; use relevance='attention_gradient' here."
        )
    attention = record.attentions.astype(np.float32, copy=False)
    if relevance == "weighted_gradient":
        return attention * gradients
    if record.raw_gradients is None:
        raise MethodError(
            "relevance='score_gradient' needs the signed attention gradients "
            "(record.raw_gradients), but the record has none; build it with "
            "attention_gradients(..., needs=DexarMethod(relevance='score_gradient').needs)."
        )
    signed = record.raw_gradients.astype(np.float32, copy=False)
    visible = record.visible[:, None, None, :]
    expected = np.einsum("tlhk,tlhk->tlh", np.where(visible, attention, 0.0), signed)
    return np.maximum(attention * (signed - expected[..., None]), 0.0).astype(np.float32)


def aggregate_keys(gradients: np.ndarray, keys: np.ndarray, how: str, topk: int) -> np.ndarray:
    """Aggregate ``[T, L, H, K]`` gradients over a per-token key set ``[T, K]``.

    Returns ``[T, L, H]``; an empty key set aggregates to 0. One layer at a time, so
    the masked working copy is ``[T, H, K]``, not another ``[T, L, H, K]`` array: at
    long answers the gradients are the largest thing an explanation holds.

    Args:
        gradients: non-negative gradients.
        keys: boolean mask of the keys in the set, per token.
        how: ``"max"``, ``"topk_mean"`` (mean of the ``topk`` largest) or ``"mean"``.
        topk: k for ``"topk_mean"``.
    """
    if how not in HEAD_AGGREGATIONS:
        raise MethodError(f"head_agg must be one of {HEAD_AGGREGATIONS}, got {how!r}.")
    tokens, layers, heads, _ = gradients.shape
    result = np.zeros((tokens, layers, heads), dtype=np.float32)
    for layer in range(layers):
        result[:, layer] = _aggregate_layer(gradients[:, layer], keys, how, topk)
    return result


def _aggregate_layer(gradients: np.ndarray, keys: np.ndarray, how: str, topk: int) -> np.ndarray:
    """:func:`aggregate_keys` on one layer's ``[T, H, K]`` gradients; returns ``[T, H]``."""
    mask = keys[:, None, :]
    if how == "max":
        return np.where(mask, gradients, 0.0).max(axis=-1, initial=0.0)
    count = keys.sum(axis=-1)[:, None]
    if how == "mean":
        total = np.where(mask, gradients, 0.0).sum(axis=-1)
        return np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    masked = np.where(mask, gradients, -np.inf)
    k = min(topk, gradients.shape[-1])
    top = -np.sort(-masked, axis=-1)[..., :k]
    top = np.where(np.isfinite(top), top, 0.0)
    used = np.minimum(count, k)
    return np.divide(top.sum(axis=-1), used, out=np.zeros(top.shape[:-1]), where=used > 0)


def _flag(name: str, value: Any) -> bool:
    """A yes/no option, refused unless it is a bool: ``bool("false")`` would be True."""
    if not isinstance(value, (bool, np.bool_)):
        raise MethodError(
            f"{name} must be True or False, got {value!r}; on the command line write "
            f"--option {name}=true or {name}=false."
        )
    return bool(value)


def after_image_blocks(layout: VisualLayout) -> np.ndarray:
    """The position right after each grid's last visual token, where that is text.

    The authors' released code leaves that position out of T_set (docs/method.md §9). Grids
    that follow one another directly (video frames) mark only the last one's; a row
    separator inside a grid is not marked.
    """
    after = np.zeros(layout.sequence_length, dtype=bool)
    for grid in layout.grids:
        position = int(grid.positions.max()) + 1
        if position < layout.sequence_length and not layout.visual_mask[position]:
            after[position] = True
    return after


class DexarMethod(Method):
    """DEX-AR (Bousselham et al., arXiv 2603.06302).

    Args:
        layers: ``"all"`` (the paper), ``k`` for the last k layers, or layer indices.
        head_agg: how S_v and S_text aggregate a head's gradients over a key set:
            ``"max"`` (default), ``"topk_mean"`` or ``"mean"``.
        topk: k of ``"topk_mean"``.
        text_set: ``"all_non_visual"`` (the paper) or ``"prompt_only"`` (drops
            chat-template and special tokens from T_set).
        normalize_tokens: aggregate the sequence map as ``sum_t delta_t minmax(E^t)``
            instead of the raw ``sum_t delta_t E^t``.
        head_weighting: False gives the ``dexar_nohead`` ablation (w = 1).
        token_weighting: False gives the ``dexar_nodelta`` ablation (delta = 1).
        relevance: the quantity that takes G's place in the head weights, the maps and
            delta (docs/method.md §13): ``"attention_gradient"`` (default, the paper's
            ``ReLU(dS/dA)``), ``"score_gradient"`` (``ReLU`` of the gradient with
            respect to the pre-softmax scores, ``A * (g - sum_k A_k g_k)``; asks the
            engine for ``raw_gradients``) or ``"weighted_gradient"`` (``ReLU(A * g)``).
            Beyond the paper, options only.
        token_score: how ``delta^t`` is scored. ``"max_gradient"`` (default, docs/method.md
            §6): ``ReLU(max_{l,i} S_v - max_{l,i} S_text)``. Two variants beyond the
            paper, options only (docs/results.md has the evidence):
            ``"attention_weighted"`` uses the same formula on ``A * G`` (the realised
            attention times the gradient, as ``attn_grad`` weighs keys), so a key the
            token never attended to cannot make it look visual or textual;
            ``"visual_share"`` is the visual keys' share of the gradient mass,
            ``sum_V G / sum_{V + T_set} G`` summed over layers and heads, which does not
            hinge on one extreme head. Head weights are the same in every case. Each
            reads :attr:`relevance`'s quantity; ``"attention_weighted"`` goes with the
            paper's only (the other relevances already weigh by A).
        official_compat: reproduce the authors' released code (docs/method.md §9): the
            last decoder layer's target applies the final norm twice, T_set leaves out
            the position right after each image block, and when every ``delta^t`` is 0
            the sequence map is all zeros instead of falling back to ``delta = 1``.
            For the published numbers only; the released default of the last 10 layers
            is ``layers=10`` (on models of 10 or more layers; the released code counts
            some layers twice on shallower ones, which is not reproduced).
            Goes with the paper's relevance only.
    """

    name = "dexar"
    option_names = (
        "head_agg",
        "topk",
        "text_set",
        "normalize_tokens",
        "head_weighting",
        "token_weighting",
        "token_score",
        "relevance",
        "official_compat",
    )

    def __init__(
        self,
        *,
        layers: Any = "all",
        head_agg: str = "max",
        topk: int = 5,
        text_set: str = "all_non_visual",
        normalize_tokens: bool = False,
        head_weighting: bool = True,
        token_weighting: bool = True,
        token_score: str = "max_gradient",
        relevance: str = "attention_gradient",
        official_compat: bool = False,
    ) -> None:
        super().__init__(layers=layers)
        if head_agg not in HEAD_AGGREGATIONS:
            raise MethodError(f"head_agg must be one of {HEAD_AGGREGATIONS}, got {head_agg!r}.")
        if text_set not in TEXT_SETS:
            raise MethodError(f"text_set must be one of {TEXT_SETS}, got {text_set!r}.")
        if token_score not in TOKEN_SCORES:
            raise MethodError(f"token_score must be one of {TOKEN_SCORES}, got {token_score!r}.")
        if relevance not in RELEVANCES:
            raise MethodError(f"relevance must be one of {RELEVANCES}, got {relevance!r}.")
        if int(topk) < 1:
            raise MethodError(f"topk must be a positive int, got {topk!r}.")
        self.head_agg = head_agg
        self.topk = int(topk)
        self.text_set = text_set
        self.normalize_tokens = _flag("normalize_tokens", normalize_tokens)
        self.head_weighting = _flag("head_weighting", head_weighting)
        self.token_weighting = _flag("token_weighting", token_weighting)
        self.token_score = token_score
        self.relevance = relevance
        self.official_compat = _flag("official_compat", official_compat)
        if relevance != "attention_gradient" and token_score == "attention_weighted":
            raise MethodError(
                f"token_score='attention_weighted' weighs the gradient by the attention, which "
                f"relevance={relevance!r} already does; use token_score='max_gradient' or "
                "'visual_share' with it."
            )
        if relevance != "attention_gradient" and self.official_compat:
            raise MethodError(
                "official_compat=True reproduces the authors' released code, which reads the "
                f"attention gradient only; drop official_compat or relevance={relevance!r}."
            )
        needs = {"doubled_final_norm"} if self.official_compat else set()
        if relevance == "score_gradient":
            needs.add("raw_gradients")
        if needs:
            self.needs = frozenset(needs)

    def explain(self, record: AttentionGradients) -> MethodResult:
        """See :meth:`Method.explain`."""
        gradients = relevance_quantity(record, self.relevance)
        layout = record.layout
        visual = np.broadcast_to(layout.visual_mask, record.visible.shape) & record.visible
        text_set = layout.text_set(self.text_set)
        if self.official_compat:
            text_set = text_set & ~after_image_blocks(layout)
        text = text_set[None, :] & record.visible
        visual_score = aggregate_keys(gradients, visual, self.head_agg, self.topk).astype(
            np.float32
        )
        text_score = aggregate_keys(gradients, text, self.head_agg, self.topk).astype(np.float32)
        if self.head_weighting:
            head_weights = np.maximum(visual_score - text_score, 0.0)
        else:
            head_weights = np.ones_like(visual_score)
        # over every key, then the visual columns: indexing first would copy [T, L, H, N]
        token_relevance = np.einsum("tlh,tlhk->tk", head_weights, gradients, dtype=np.float32)[
            :, layout.visual_positions
        ]
        if self.token_weighting:
            token_weights = self._token_weights(
                record, gradients, visual, text, visual_score, text_score
            )
        else:
            token_weights = np.ones(gradients.shape[0], dtype=np.float32)
        fallback = bool(np.all(token_weights == 0)) and not self.official_compat
        weights = np.ones_like(token_weights) if fallback else token_weights
        per_token = (
            np.stack([minmax(row) for row in token_relevance])
            if self.normalize_tokens
            else token_relevance
        )
        sequence = np.einsum("t,tn->n", weights, per_token, dtype=np.float32)
        return MethodResult(
            token_relevance=token_relevance.astype(np.float32),
            sequence_relevance=sequence.astype(np.float32),
            token_weights=token_weights.astype(np.float32),
            head_weights=head_weights.astype(np.float32),
            sequence_fallback=fallback,
        )

    def _token_weights(
        self,
        record: AttentionGradients,
        gradients: np.ndarray,
        visual: np.ndarray,
        text: np.ndarray,
        visual_score: np.ndarray,
        text_score: np.ndarray,
    ) -> np.ndarray:
        """``delta^t`` per token, ``[T]``, scored as :attr:`token_score` says on
        ``gradients``, the :attr:`relevance` quantity."""
        if self.token_score == "max_gradient":
            return np.maximum(visual_score.max(axis=(1, 2)) - text_score.max(axis=(1, 2)), 0.0)
        if self.token_score == "attention_weighted":
            weighted = gradients * record.attentions.astype(np.float32, copy=False)
            on_visual = aggregate_keys(weighted, visual, self.head_agg, self.topk)
            on_text = aggregate_keys(weighted, text, self.head_agg, self.topk)
            return np.maximum(on_visual.max(axis=(1, 2)) - on_text.max(axis=(1, 2)), 0.0)
        visual_mass = np.einsum("tlhk,tk->t", gradients, visual.astype(np.float32))
        text_mass = np.einsum("tlhk,tk->t", gradients, text.astype(np.float32))
        total = visual_mass + text_mass
        return np.divide(visual_mass, total, out=np.zeros_like(total), where=total > 0)
