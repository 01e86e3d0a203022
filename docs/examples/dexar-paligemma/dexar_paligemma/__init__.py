"""dexar-paligemma: a third-party dexar adapter for PaliGemma, registered by entry point.

``pyproject.toml`` declares this module under ``[project.entry-points.dexar]``; dexar
imports it, calls :func:`dexar_adapters` and gets the adapter's spec. Nothing heavy is
imported here: the factory and the conformance case import torch and transformers only
when dexar calls them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dexar_core.values import AdapterSpec
from dexar_plugins import hookimpl

__version__ = "0.1.0"


# --8<-- [start:hook]
def _adapter() -> Any:
    from dexar_paligemma.adapter import PaliGemmaAdapter

    return PaliGemmaAdapter()


def conformance_case() -> Any:
    """A random tiny PaliGemma, an image and a prompt: what the conformance kit checks."""
    from dexar_paligemma.tiny import tiny_case

    return tiny_case()


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The PaliGemma adapter (PaliGemma 1 and 2)."""
    return (
        AdapterSpec(
            name="paligemma",
            model_types=("paligemma",),
            architectures=("PaliGemmaForConditionalGeneration",),
            factory=_adapter,
            description="PaliGemma 1/2 (PaliGemmaForConditionalGeneration), image-first prefix",
            conformance=conformance_case,
        ),
    )


# --8<-- [end:hook]
