"""Built-in LLaVA adapter, registered through the ``dexar`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Iterable

from dexar_core.values import AdapterSpec
from dexar_plugins import hookimpl


def _adapter() -> object:
    from dexar_llava.adapter import LlavaAdapter

    return LlavaAdapter()


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The LLaVA-1.5 adapter (LLaVA-NeXT is claimed so its refusal can say why)."""
    return (
        AdapterSpec(
            name="llava",
            model_types=("llava", "llava_next"),
            architectures=("LlavaForConditionalGeneration", "LlavaNextForConditionalGeneration"),
            factory=_adapter,
            description="LLaVA-1.5 (LlavaForConditionalGeneration), decoder-only",
        ),
    )
