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


@hookimpl
def dexar_methods() -> Iterable[MethodSpec]:
    """DEX-AR and its two ablations (w = 1, delta = 1)."""
    return (
        MethodSpec(
            name="dexar",
            factory=_dexar,
            description="DEX-AR: layer-wise attention gradients, head and token filtering",
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
