"""Built-in LLaVA adapter, registered through the ``dexar`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dexar_core.values import AdapterSpec, EmbeddedModelSpec
from dexar_core.zoo.generative import AnswerRecipe
from dexar_plugins import hookimpl


def _adapter() -> object:
    from dexar_llava.adapter import LlavaAdapter

    return LlavaAdapter()


def conformance_case() -> Any:
    """A random tiny LLaVA, a non-square noise image and a prompt, for the conformance kit."""
    from dexar_llava.adapter import LlavaAdapter
    from dexar_llava.tiny import build_tiny_llava
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_llava(seed=0, image_size=32, hidden_size=64, kv_heads=2)
    return ConformanceCase.from_model(
        model, processor, LlavaAdapter(), model_id="tiny-llava", image_size=(48, 80)
    )


def _mend_layout(path: str, model: Any, processor: Any) -> list[str]:
    from dexar_llava.published_layouts import mend_llava_layout

    return mend_llava_layout(path, model, processor)


def _next_adapter() -> object:
    from dexar_llava.next import LlavaNextAdapter

    return LlavaNextAdapter()


def next_conformance_case() -> Any:
    """A random tiny LLaVA-NeXT, a wide noise image (2x1 tiles, unpadded) and a prompt."""
    from dexar_llava.next import LlavaNextAdapter
    from dexar_llava.tiny_next import build_tiny_llava_next
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_llava_next(seed=0)
    return ConformanceCase.from_model(
        model, processor, LlavaNextAdapter(), model_id="tiny-llava-next", image_size=(40, 90)
    )


def _onevision_adapter() -> object:
    from dexar_llava.onevision import LlavaOnevisionAdapter

    return LlavaOnevisionAdapter()


def onevision_conformance_case() -> Any:
    """A random tiny LLaVA-OneVision, a wide noise image (2x1 tiles, unpadded) and a prompt."""
    from dexar_llava.onevision import LlavaOnevisionAdapter
    from dexar_llava.tiny_onevision import build_tiny_llava_onevision
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_llava_onevision(seed=0)
    return ConformanceCase.from_model(
        model,
        processor,
        LlavaOnevisionAdapter(),
        model_id="tiny-llava-onevision",
        image_size=(40, 90),
    )


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The LLaVA-1.5, LLaVA-NeXT and LLaVA-OneVision adapters (LLaVA-NeXT-Video is
    claimed so its refusal can say why)."""
    return (
        AdapterSpec(
            name="llava",
            model_types=("llava",),
            architectures=("LlavaForConditionalGeneration",),
            factory=_adapter,
            description="LLaVA-1.5 (LlavaForConditionalGeneration), decoder-only",
            conformance=conformance_case,
            mend_layout=_mend_layout,
        ),
        AdapterSpec(
            name="llava_next",
            model_types=("llava_next", "llava_next_video"),
            architectures=(
                "LlavaNextForConditionalGeneration",
                "LlavaNextVideoForConditionalGeneration",
            ),
            factory=_next_adapter,
            description="LLaVA-NeXT / LLaVA-1.6 (LlavaNextForConditionalGeneration), any-res tiles",
            conformance=next_conformance_case,
        ),
        AdapterSpec(
            name="llava_onevision",
            model_types=("llava_onevision",),
            architectures=("LlavaOnevisionForConditionalGeneration",),
            factory=_onevision_adapter,
            description=(
                "LLaVA-OneVision (LlavaOnevisionForConditionalGeneration), anyres-max tiles"
            ),
            conformance=onevision_conformance_case,
        ),
    )


RECIPE = AnswerRecipe(
    name="llava",
    builder="dexar_llava.tiny:build_tiny_llava",
    prompt_formatter="dexar_llava.tiny:format_prompt",
    description="LlavaForConditionalGeneration: CLIP vision tower, Llama language model",
    # Two layers each left shape recognition and attribute binding in scenes of two
    # or three objects near chance (66 % shape, 68 % position after 3000 steps):
    # a deeper tower tells circles from squares, a deeper LM binds "red" to a place.
    model_options={"text_layers": 4, "vision_layers": 3},
)
"""How ``shapes-llava`` is trained (``python -m dexar_core.zoo.train --adapter llava``)."""


@hookimpl
def dexar_embedded_models() -> Iterable[EmbeddedModelSpec]:
    """The tiny LLaVA trained on the shapes benchmark, the default of ``dexar explain``."""
    here = Path(__file__).parent
    return (
        EmbeddedModelSpec(
            name="shapes-llava",
            path=here / "checkpoints" / "shapes-llava",
            adapter="llava",
            description="tiny LLaVA trained on the synthetic shapes benchmark (see its card)",
            example_image=here / "example.png",
            example_prompt="describe the image",
            recipe=RECIPE,
            default=True,
        ),
    )
