"""Built-in InternVL adapter, registered through the ``dexar`` entry point."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.values import AdapterSpec
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter


def _adapter() -> ModelAdapter:
    from dexar_internvl.adapter import InternVLAdapter

    return InternVLAdapter()


def conformance_case() -> Any:
    """A random tiny InternVL and a wide noise image (2x3 tiles and the thumbnail)."""
    from dexar_internvl.adapter import InternVLAdapter
    from dexar_internvl.tiny import build_tiny_internvl
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_internvl(seed=0)
    return ConformanceCase.from_model(
        model, processor, InternVLAdapter(), model_id="tiny-internvl", image_size=(48, 80)
    )


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The InternVL adapter (dynamic tiles plus a thumbnail, several images)."""
    return (
        AdapterSpec(
            name="internvl",
            model_types=("internvl",),
            architectures=("InternVLForConditionalGeneration",),
            factory=_adapter,
            description="InternVL (-hf format), decoder-only, dynamic tiles plus a thumbnail",
            conformance=conformance_case,
        ),
    )
