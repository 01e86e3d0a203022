"""Built-in Gemma 3 adapter, registered through the ``dexar`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.values import AdapterSpec
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter


def _adapter() -> ModelAdapter:
    from dexar_gemma3.adapter import Gemma3Adapter

    return Gemma3Adapter()


def conformance_case() -> Any:
    """A random tiny Gemma 3, a non-square noise image and a prompt, for the conformance kit."""
    from dexar_gemma3.adapter import Gemma3Adapter
    from dexar_gemma3.tiny import build_tiny_gemma3
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_gemma3(seed=0)
    return ConformanceCase.from_model(
        model, processor, Gemma3Adapter(), model_id="tiny-gemma3", image_size=(48, 80)
    )


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The Gemma 3 adapter."""
    return (
        AdapterSpec(
            name="gemma3",
            model_types=("gemma3",),
            architectures=("Gemma3ForConditionalGeneration",),
            factory=_adapter,
            description="Gemma 3 (Gemma3ForConditionalGeneration), fixed soft tokens per image",
            conformance=conformance_case,
        ),
    )
