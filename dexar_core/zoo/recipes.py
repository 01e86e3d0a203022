"""Training recipes: how to build, prompt and batch each adapter's tiny model.

Adapters are rows of :data:`RECIPES`: a name, the builder of a fresh model and
processor, and the prompt formatter. Adding an architecture is adding a row.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import attrs

from dexar_core.errors import InputError


@attrs.frozen(kw_only=True)
class TrainingRecipe:
    """How to build and prompt one adapter's tiny model.

    Attributes:
        name: the adapter name used on the command line.
        builder: ``"module:function"`` returning ``(model, processor)``; called with
            ``seed=`` (and any ``model_options``).
        prompt_formatter: ``"module:function"`` turning a question into the full prompt.
        description: one line for the model card.
        extra_image_sizes: ``(height, width)`` sizes besides ``image_size``, for models
            with dynamic resolution: training batches cycle through all the sizes and
            the test and held-out items are spread evenly over them.
        position_ids: whether the training batch passes 1D positions that skip the left
            padding; False for models that derive their own from the attention mask
            (Qwen-VL's multimodal M-RoPE positions).
        encoder_decoder: whether the answer is the decoder's (Florence-2): the prompt is
            the encoder's input, right-padded (absolute positions then match a single
            prompt), and the labels are the answer tokens alone.
        model_options: builder keyword arguments of the embedded model's architecture
            (layer counts, widths); ``train(model_options=...)`` overrides them.
    """

    name: str
    builder: str
    prompt_formatter: str
    description: str
    extra_image_sizes: tuple[tuple[int, int], ...] = ()
    position_ids: bool = True
    encoder_decoder: bool = False
    model_options: dict[str, Any] = attrs.field(factory=dict)

    def build(self, seed: int, **model_options: Any) -> tuple[Any, Any]:
        """Build a fresh, randomly initialised ``(model, processor)``.

        ``model_options`` override the recipe's own :attr:`model_options`.
        """
        return _resolve(self.builder)(seed=seed, **{**self.model_options, **model_options})

    def formatter(self) -> Callable[[str], str]:
        """Return the function turning a question into the model's prompt."""
        return _resolve(self.prompt_formatter)


RECIPES: dict[str, TrainingRecipe] = {
    "llava": TrainingRecipe(
        name="llava",
        builder="dexar_llava.tiny:build_tiny_llava",
        prompt_formatter="dexar_llava.tiny:format_prompt",
        description="LlavaForConditionalGeneration: CLIP vision tower, Llama language model",
        # Two layers each left shape recognition and attribute binding in scenes of two
        # or three objects near chance (66 % shape, 68 % position after 3000 steps):
        # a deeper tower tells circles from squares, a deeper LM binds "red" to a place.
        model_options={"text_layers": 4, "vision_layers": 3},
    ),
    "qwen2vl": TrainingRecipe(
        name="qwen2vl",
        builder="dexar_qwen_vl.tiny:build_shapes_qwen2_vl",
        prompt_formatter="dexar_qwen_vl.tiny:format_prompt",
        description=(
            "Qwen2VLForConditionalGeneration: ViT with 2x2 patch merger, Qwen2 language model "
            "with M-RoPE, dynamic resolution"
        ),
        extra_image_sizes=((96, 96), (80, 112), (112, 80)),
        position_ids=False,
        # As for LLaVA: depth for shape recognition and attribute binding.
        model_options={"text_layers": 4, "vision_layers": 3},
    ),
    "florence2": TrainingRecipe(
        name="florence2",
        builder="dexar_florence2.tiny:build_shapes_florence2",
        prompt_formatter="dexar_florence2.tiny:format_prompt",
        description=("Florence2ForConditionalGeneration: DaViT vision tower, BART encoder-decoder"),
        position_ids=False,
        encoder_decoder=True,
    ),
    "blip2": TrainingRecipe(
        name="blip2",
        builder="dexar_blip2.tiny:build_shapes_blip2",
        prompt_formatter="dexar_blip2.tiny:format_prompt",
        description=(
            "Blip2ForConditionalGeneration: ViT, Q-Former with 32 query tokens, OPT language model"
        ),
    ),
}
"""Adapters this script can train, by name."""


def recipe(adapter: str) -> TrainingRecipe:
    if adapter not in RECIPES:
        raise InputError(
            f"dexar_core.zoo.train: expected adapter to be one of {sorted(RECIPES)}, "
            f"found {adapter!r}."
        )
    return RECIPES[adapter]


def _resolve(reference: str) -> Any:
    """Import ``"module:attribute"`` lazily, so the table costs nothing to import."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)
