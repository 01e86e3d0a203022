"""The core's own plugin: registers the explanation methods the core ships."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from dexar_core.values import MethodSpec
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.methods.base import Method


def _dexar(**options: Any) -> Method:
    from dexar_core.methods.dexar import DexarMethod

    return DexarMethod(**options)


def _ablation(name: str, **options: Any) -> Method:
    from dexar_core.methods.dexar import DexarMethod

    switch = {"dexar_nohead": "head_weighting", "dexar_nodelta": "token_weighting"}[name]
    method = DexarMethod(**{**options, switch: False})
    method.name = name
    return method


PRESETS: dict[str, dict[str, Any]] = {
    "dexar_weighted": {"relevance": "weighted_gradient", "text_set": "prompt_only"},
}
"""Registered option sets of DEX-AR, by name: chosen on the validation splits by the
protocol of docs/results.md (docs/results/protocol.py), reported on the test splits."""


def _preset(name: str, **options: Any) -> Method:
    """The preset's DexarMethod; an option given explicitly overrides the preset's."""
    from dexar_core.methods.dexar import DexarMethod

    method = DexarMethod(**{**PRESETS[name], **options})
    method.name = name
    return method


# name -> (module, class, needs the backward pass, description): imported only when used
BASELINES = {
    "attention": (
        "attention",
        "AttentionMethod",
        False,
        "baseline: head-mean attention of the answer rows (last layer; layers='all' for all)",
    ),
    "attn_grad": (
        "attn_grad",
        "AttnGradMethod",
        True,
        "baseline: per layer ReLU(sum over heads of attention x signed gradient), summed",
    ),
    "legrad": (
        "legrad",
        "LeGradMethod",
        True,
        "baseline: LeGrad, head-mean ReLU'd layer-wise gradients summed over layers",
    ),
    "rollout": (
        "rollout",
        "RolloutMethod",
        False,
        "baseline: attention rollout, product of row-normalised (A_bar + I) over layers",
    ),
    "gae": (
        "gae",
        "GaeMethod",
        True,
        "baseline: Chefer et al. 2021 relevance propagation of the final-layer logit",
    ),
    "tam": (
        "tam",
        "TamMethod",
        False,
        "baseline: Token Activation Map, logit activations with causal-inference correction",
    ),
}


def _baseline(name: str, **options: Any) -> Method:
    from importlib import import_module

    module, class_name = BASELINES[name][:2]
    method_class = getattr(import_module(f"dexar_core.methods.{module}"), class_name)
    method: Method = method_class(**options)
    return method


@hookimpl
def dexar_methods() -> Iterable[MethodSpec]:
    """DEX-AR, its preset, its two ablations (w = 1, delta = 1) and the baselines of
    docs/method.md §10."""
    baselines = tuple(
        MethodSpec(
            name=name,
            factory=partial(_baseline, name),
            needs_gradients=needs_gradients,
            description=description,
        )
        for name, (_, _, needs_gradients, description) in BASELINES.items()
    )
    return (
        *baselines,
        MethodSpec(
            name="dexar",
            factory=_dexar,
            description="DEX-AR: layer-wise attention gradients, head and token filtering",
        ),
        MethodSpec(
            name="dexar_weighted",
            factory=partial(_preset, "dexar_weighted"),
            description="DEX-AR on the attention-weighted gradient A*G with the prompt-only "
            "text set: the recommended preset (docs/results.md)",
        ),
        MethodSpec(
            name="dexar_nohead",
            factory=partial(_ablation, "dexar_nohead"),
            description="DEX-AR ablation without head weighting (w = 1)",
        ),
        MethodSpec(
            name="dexar_nodelta",
            factory=partial(_ablation, "dexar_nodelta"),
            description="DEX-AR ablation without token weighting (delta = 1)",
        ),
    )
