"""Built-in Qwen2-VL / Qwen2.5-VL adapter, registered through the ``dexar`` entry point."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dexar_core.values import AdapterSpec
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def _adapter() -> ModelAdapter:
    from dexar_qwen_vl.adapter import QwenVLAdapter

    return QwenVLAdapter()


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The Qwen2-VL and Qwen2.5-VL adapter (images of any size, several images, video)."""
    return (
        AdapterSpec(
            name="qwen_vl",
            model_types=("qwen2_vl", "qwen2_5_vl"),
            architectures=(
                "Qwen2VLForConditionalGeneration",
                "Qwen2_5_VLForConditionalGeneration",
            ),
            factory=_adapter,
            description="Qwen2-VL / Qwen2.5-VL, decoder-only, dynamic resolution and video",
        ),
    )
