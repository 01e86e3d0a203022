"""Built-in Llama 3.2 Vision (mllama) adapter, registered through the ``dexar`` entry point."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.values import AdapterSpec
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter


def _adapter() -> ModelAdapter:
    from dexar_mllama.adapter import MllamaAdapter

    return MllamaAdapter()


def conformance_case() -> Any:
    """A random tiny mllama (cross-attention at layers 3 and 8) and a wide image of 3 tiles."""
    from dexar_mllama.adapter import MllamaAdapter
    from dexar_mllama.tiny import build_tiny_mllama
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_mllama(seed=0)
    return ConformanceCase.from_model(
        model, processor, MllamaAdapter(), model_id="tiny-mllama", image_size=(48, 130)
    )


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The Llama 3.2 Vision adapter (tiled images through cross-attention layers)."""
    return (
        AdapterSpec(
            name="mllama",
            model_types=("mllama",),
            architectures=("MllamaForConditionalGeneration",),
            factory=_adapter,
            description="Llama 3.2 Vision, images through gated cross-attention layers "
            "(explained: their cross-attention over the tiles)",
            conformance=conformance_case,
        ),
    )
