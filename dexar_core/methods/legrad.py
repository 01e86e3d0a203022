"""LeGrad baseline: layer-wise ReLU'd attention gradients, no head or token weighting."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from dexar_core.engine.layers import resolve_layers
from dexar_core.errors import MethodError
from dexar_core.interfaces import ANSWER_TOKENS, PROMPTS
from dexar_core.methods.attention import summed_over_tokens
from dexar_core.methods.base import Method, MethodResult
from dexar_core.records import AttentionGradients

TARGETS = ("mean_tokens", "model_pool")
"""A contrastive model's per-layer target: LeGrad's, or the model's own pooling."""

PUBLISHED_BLOCKS = 2
"""LeGrad's default ``layer_index=-2``: the last two blocks of a contrastive ViT."""

MEAN_TOKEN_POOLING = "mean_tokens"
"""``record.metadata["target_pooling"]`` of a pass that used LeGrad's mean-token target."""


class LeGradMethod(Method):
    """E^t = sum_l mean_i ReLU(d s^{l,t} / d A^{l,i}[q_t, V]) (Bousselham et al., LeGrad).

    On a generative model the per-layer targets are DEX-AR's logit-lens targets and
    every layer is explained by default. On a contrastive model (the units are prompts)
    the default follows the published LeGrad: the target of block l is the cosine of
    ``proj(ln_post(mean over all tokens of block l's output))`` with the text, every
    query row is a leaf (mean over rows), the last 2 blocks are explained, and the maps
    are min-max normalised after bilinear upsampling to the image. No head is weighted
    and the sequence map is the plain sum over units (docs/baselines.md).

    Args:
        layers: None (default) for the method's own: ``"all"`` on a generative model,
            the last 2 blocks on a contrastive one with ``target="mean_tokens"`` (all
            with ``"model_pool"``); or ``"all"``, ``k`` for the last k layers, or indices.
        target: a contrastive model's per-layer target: ``"mean_tokens"`` (default,
            LeGrad's) or ``"model_pool"`` (the model's own pooling, only the rows it
            reads as leaves, maps normalised on the grid: dexar's earlier form). A
            generative model's target is the logit lens either way.
    """

    name = "legrad"
    option_names = ("target",)

    def __init__(self, *, layers: Any = None, target: str = "mean_tokens") -> None:
        super().__init__(layers=layers)
        if target not in TARGETS:
            raise MethodError(f"target must be one of {TARGETS}, got {target!r}.")
        self.target = target
        if target == "mean_tokens":
            self.needs = frozenset({"mean_token_target"})

    def layers(self, num_layers: int, units: str = ANSWER_TOKENS) -> tuple[int, ...]:
        """See :meth:`Method.layers`; None resolves to the model kind's default."""
        option = self.layers_option
        if option is None:
            published = units == PROMPTS and self.target == "mean_tokens"
            option = min(PUBLISHED_BLOCKS, num_layers) if published else "all"
        return resolve_layers(option, num_layers)

    def explain(self, record: AttentionGradients) -> MethodResult:
        """See :meth:`Method.explain`."""
        on_visual = record.gradients[..., record.layout.visual_positions]
        per_layer = on_visual.mean(axis=2, dtype=np.float32)
        result = summed_over_tokens(per_layer.sum(axis=1, dtype=np.float32))
        published = record.metadata.get("target_pooling") == MEAN_TOKEN_POOLING
        return attrs.evolve(result, minmax_after_upsampling=published)
