"""Built-in BLIP-2 adapter, registered through the ``dexar`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dexar_core.values import AdapterSpec, EmbeddedModelSpec
from dexar_core.zoo.generative import AnswerRecipe
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter


CHECKPOINTS = Path(__file__).parent / "checkpoints"
"""Where the embedded checkpoints live."""

EXAMPLE_TEST_INDEX = 8
"""``ShapesDataset("test")[8]``, saved as ``example.png``: three objects, whose circle's
colour the embedded model names correctly (it captions poorly, see its card)."""


def _adapter() -> ModelAdapter:
    from dexar_blip2.adapter import Blip2Adapter

    return Blip2Adapter()


def _mend_layout(path: str, model: Any, processor: Any) -> list[str]:
    from dexar_blip2.published_layouts import mend_blip2_layout

    return mend_blip2_layout(path, model, processor)


def conformance_case() -> Any:
    """A random tiny BLIP-2 with an OPT language model, a noise image and a prompt."""
    from dexar_blip2.adapter import Blip2Adapter
    from dexar_blip2.tiny import build_tiny_blip2
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_blip2(seed=0, hidden_size=64, num_query_tokens=8)
    return ConformanceCase.from_model(
        model, processor, Blip2Adapter(), model_id="tiny-blip2-opt", image_size=(48, 80)
    )


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The BLIP-2 adapter, OPT and Flan-T5 (InstructBLIP is claimed so its refusal says why)."""
    return (
        AdapterSpec(
            name="blip2",
            model_types=("blip-2", "instructblip"),
            architectures=(
                "Blip2ForConditionalGeneration",
                "InstructBlipForConditionalGeneration",
            ),
            factory=_adapter,
            conformance=conformance_case,
            mend_layout=_mend_layout,
            description="BLIP-2 (Blip2ForConditionalGeneration), OPT or Flan-T5; maps "
            "projected from the query tokens onto patches through the Q-Former",
        ),
    )


RECIPE = AnswerRecipe(
    name="blip2",
    builder="dexar_blip2.tiny:build_shapes_blip2",
    prompt_formatter="dexar_blip2.tiny:format_prompt",
    description=(
        "Blip2ForConditionalGeneration: ViT, Q-Former with 32 query tokens, OPT language model"
    ),
)
"""How ``shapes-blip2`` is trained (``python -m dexar_core.zoo.train --adapter blip2``)."""


@hookimpl
def dexar_embedded_models() -> Iterable[EmbeddedModelSpec]:
    """``shapes-blip2``: see its model card for the training command and accuracy."""
    return (
        EmbeddedModelSpec(
            name="shapes-blip2",
            path=CHECKPOINTS / "shapes-blip2",
            adapter="blip2",
            description="tiny BLIP-2 (ViT, Q-Former, OPT) trained on the shapes benchmark",
            example_image=Path(__file__).parent / "example.png",
            example_prompt="what color is the circle?",
            recipe=RECIPE,
        ),
    )
