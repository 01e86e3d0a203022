"""Built-in Idefics3 / SmolVLM adapter, registered through the ``dexar`` entry point."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.values import AdapterSpec
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter


def _adapter() -> ModelAdapter:
    from dexar_idefics3.adapter import Idefics3Adapter

    return Idefics3Adapter()


def conformance_case() -> Any:
    """A random tiny Idefics3 and a wide noise image (3x4 tiles and the global view)."""
    from dexar_idefics3.adapter import Idefics3Adapter
    from dexar_idefics3.tiny import build_tiny_idefics3
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_idefics3(seed=0)
    return ConformanceCase.from_model(
        model, processor, Idefics3Adapter(), model_id="tiny-idefics3", image_size=(48, 80)
    )


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The Idefics3 / SmolVLM adapter (tiles plus a global view, several images)."""
    return (
        AdapterSpec(
            name="idefics3",
            model_types=("idefics3", "smolvlm"),
            architectures=("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration"),
            factory=_adapter,
            description="Idefics3 / SmolVLM, decoder-only, image tiles plus a global view",
            conformance=conformance_case,
        ),
    )
