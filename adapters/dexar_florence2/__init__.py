"""Built-in Florence-2 adapter, registered through the ``dexar`` entry point like any plugin."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dexar_core.values import AdapterSpec, EmbeddedModelSpec
from dexar_core.zoo.generative import AnswerRecipe
from dexar_florence2.published_layouts import refuse_remote_code_florence2
from dexar_plugins import hookimpl

if TYPE_CHECKING:
    from dexar_core.interfaces import ModelAdapter


CHECKPOINTS = Path(__file__).parent / "checkpoints"
"""Where the embedded checkpoints live."""

EXAMPLE_TEST_INDEX = 41
"""``ShapesDataset("test")[41]``, saved as ``example.png``: a test image the embedded
model captions correctly ("a blue circle at the left")."""


def _adapter() -> ModelAdapter:
    from dexar_florence2.adapter import Florence2Adapter

    return Florence2Adapter()


def conformance_case() -> Any:
    """A random tiny Florence-2, a non-square noise image and a task prompt, for the kit.

    The kit's default probe of where the image enters reads the first decoder layer's
    input, which for an encoder-decoder never depends on the pixels; the test suite
    (tests/adapters/florence2/test_florence2_conformance.py) probes the encoder's input instead.
    """
    from dexar_florence2.adapter import Florence2Adapter
    from dexar_florence2.tiny import build_tiny_florence2
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_florence2(seed=0, hidden_size=64)
    return ConformanceCase.from_model(
        model,
        processor,
        Florence2Adapter(),
        model_id="tiny-florence2",
        image_size=(48, 80),
        prompt="<CAPTION>",
        answer="a red circle at the left",
        expected_failures={
            "grids_cover_visual_positions": "the default probe reads the decoder's input; "
            "an encoder-decoder's image enters through the encoder (checked in dexar's tests)"
        },
    )


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The Florence-2 adapter (transformers' native ``Florence2ForConditionalGeneration``)."""
    return (
        AdapterSpec(
            name="florence2",
            model_types=("florence2",),
            architectures=("Florence2ForConditionalGeneration",),
            factory=_adapter,
            conformance=conformance_case,
            refuse_layout=refuse_remote_code_florence2,
            description="Florence-2 (Florence2ForConditionalGeneration), encoder-decoder: "
            "decoder cross-attention",
        ),
    )


RECIPE = AnswerRecipe(
    name="florence2",
    builder="dexar_florence2.tiny:build_shapes_florence2",
    prompt_formatter="dexar_florence2.tiny:format_prompt",
    description="Florence2ForConditionalGeneration: DaViT vision tower, BART encoder-decoder",
    position_ids=False,
    encoder_decoder=True,
)
"""How ``shapes-florence2`` is trained (``python -m dexar_core.zoo.train --adapter florence2``)."""


@hookimpl
def dexar_embedded_models() -> Iterable[EmbeddedModelSpec]:
    """``shapes-florence2``: see its model card for the training command and accuracy."""
    return (
        EmbeddedModelSpec(
            name="shapes-florence2",
            path=CHECKPOINTS / "shapes-florence2",
            adapter="florence2",
            description="tiny Florence-2 (DaViT, BART) trained on the shapes benchmark",
            example_image=Path(__file__).parent / "example.png",
            example_prompt="describe the image.",
            recipe=RECIPE,
        ),
    )
