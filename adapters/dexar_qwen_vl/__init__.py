"""Built-in Qwen2-VL / Qwen2.5-VL / Qwen3-VL adapter, registered through the ``dexar`` entry
point."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dexar_core.values import AdapterSpec, EmbeddedModelSpec
from dexar_core.zoo.generative import AnswerRecipe
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
"""Where the embedded checkpoints live."""

EXAMPLE_TEST_INDEX = 23
"""``ShapesDataset("test", image_size=(80, 112))[23]``, saved as ``example.png``: a
non-square test image the embedded model captions correctly."""


def _adapter() -> ModelAdapter:
    from dexar_qwen_vl.adapter import QwenVLAdapter

    return QwenVLAdapter()


def conformance_case(version: str = "2") -> Any:
    """A random tiny Qwen-VL, a non-square image and a short video, for the conformance kit.

    Args:
        version: ``"2"`` (Qwen2-VL, the default case), ``"2.5"`` (Qwen2.5-VL) or ``"3"``
            (Qwen3-VL, with DeepStack into the first three of four decoder layers).
    """
    import numpy as np
    from PIL import Image

    from dexar_core.images import Video
    from dexar_core.records import LoadedModel
    from dexar_plugins.testing.conformance import ConformanceCase
    from dexar_qwen_vl.adapter import QwenVLAdapter
    from dexar_qwen_vl.tiny import build_tiny_qwen_vl

    # Qwen3-VL: DeepStack from 3 vision blocks into 3 of 4 decoder layers
    text_layers, vision_layers = (4, 3) if version == "3" else (2, 2)
    model, processor = build_tiny_qwen_vl(
        version=version,
        seed=0,
        hidden_size=64,
        text_layers=text_layers,
        vision_layers=vision_layers,
    )
    adapter = QwenVLAdapter()
    adapter.model_class = type(model).__name__
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    frames = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    return ConformanceCase(
        loaded=LoadedModel(
            model=model, processor=processor, adapter=adapter, model_id="tiny-qwen-vl"
        ),
        images=(image, Video(frames=frames)),
        prompt="what color is the circle?",
        answer="a red circle",
    )


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The Qwen2-VL, Qwen2.5-VL and Qwen3-VL adapter (images of any size, several images,
    video)."""
    return (
        AdapterSpec(
            name="qwen_vl",
            model_types=("qwen2_vl", "qwen2_5_vl", "qwen3_vl"),
            architectures=(
                "Qwen2VLForConditionalGeneration",
                "Qwen2_5_VLForConditionalGeneration",
                "Qwen3VLForConditionalGeneration",
            ),
            factory=_adapter,
            description="Qwen2-VL / Qwen2.5-VL / Qwen3-VL (DeepStack), decoder-only, dynamic "
            "resolution and video",
            conformance=conformance_case,
        ),
    )


RECIPE = AnswerRecipe(
    name="qwen2vl",
    builder="dexar_qwen_vl.tiny:build_shapes_qwen2_vl",
    prompt_formatter="dexar_qwen_vl.tiny:format_prompt",
    description=(
        "Qwen2VLForConditionalGeneration: ViT with 2x2 patch merger, Qwen2 language model "
        "with M-RoPE, dynamic resolution"
    ),
    extra_image_sizes=((96, 96), (80, 112), (112, 80)),
    # M-RoPE positions come from the attention mask and the image grids.
    position_ids=False,
    # As for LLaVA: depth for shape recognition and attribute binding.
    model_options={"text_layers": 4, "vision_layers": 3},
)
"""How ``shapes-qwen2vl`` is trained (``python -m dexar_core.zoo.train --adapter qwen2vl``)."""


@hookimpl
def dexar_embedded_models() -> Iterable[EmbeddedModelSpec]:
    """``shapes-qwen2vl``: see its model card for the training command and accuracy."""
    return (
        EmbeddedModelSpec(
            name="shapes-qwen2vl",
            path=CHECKPOINTS / "shapes-qwen2vl",
            adapter="qwen_vl",
            description="tiny Qwen2-VL (ViT + 2x2 merger, Qwen2 with M-RoPE) trained on "
            "the shapes benchmark at several sizes and aspect ratios",
            example_image=Path(__file__).resolve().parent / "example.png",
            example_prompt="describe the image.",
            recipe=RECIPE,
        ),
    )
