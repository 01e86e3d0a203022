"""Built-in Mistral 3 adapter, registered through the ``dexar`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.values import AdapterSpec
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter


def _adapter() -> ModelAdapter:
    from dexar_mistral3.adapter import Mistral3Adapter

    return Mistral3Adapter()


def conformance_case() -> Any:
    """A random tiny Mistral 3, a non-square noise image and a prompt, for the conformance kit."""
    from dexar_mistral3.adapter import Mistral3Adapter
    from dexar_mistral3.tiny import build_tiny_mistral3
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_mistral3(seed=0)
    return ConformanceCase.from_model(
        model, processor, Mistral3Adapter(), model_id="tiny-mistral3", image_size=(48, 80)
    )


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The Mistral 3 adapter."""
    return (
        AdapterSpec(
            name="mistral3",
            model_types=("mistral3",),
            architectures=("Mistral3ForConditionalGeneration",),
            factory=_adapter,
            description="Mistral 3 (Mistral3ForConditionalGeneration), Pixtral native resolution",
            conformance=conformance_case,
        ),
    )
