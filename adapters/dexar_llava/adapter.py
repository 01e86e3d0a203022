"""The LLaVA adapter: LLaVA-1.5-style ``LlavaForConditionalGeneration`` models.

The processor expands each ``<image>`` placeholder in the prompt into one token per
vision patch (plus the CLS feature when ``vision_feature_select_strategy="full"``,
which lies on no grid and is left out of both V and the text set). The patches form an
``(H / patch) x (W / patch)`` grid in row-major order over the processed image, which
covers the original image after the processor's resize and centre crop.
"""

from __future__ import annotations

from typing import Any

from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import ImageTokenConvention
from dexar_core.hf.generative import chat_template_prompt
from dexar_core.hf.loading import ServedModelType
from dexar_core.records import LoadedModel


def cls_feature(config: Any) -> int:
    """1 where the vision tower's CLS feature precedes each image's patches, else 0."""
    return int(config.vision_feature_select_strategy == "full")


FALLBACK_TEMPLATE = "USER: {image}\n{prompt} ASSISTANT:"
"""The LLaVA-1.5 prompt form, used when the processor has no chat template."""


class LlavaAdapter(HFDecoderOnlyAdapter):
    """Adapter for ``LlavaForConditionalGeneration`` (LLaVA-1.5 layout)."""

    name = "llava"
    model_class = "LlavaForConditionalGeneration"
    image_tokens = ImageTokenConvention(leading_tokens=cls_feature)
    served_model_type = ServedModelType(
        family="LLaVA-1.5-style models",
        model_type="llava",
        instead="For LLaVA-NeXT (model_type 'llava_next') use the llava_next adapter "
        "(`--adapter llava_next`, or let dexar choose).",
    )

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """Apply the chat template, or the LLaVA-1.5 form; a prompt with ``<image>`` is kept."""
        return llava_prompt(loaded, prompt, num_images)


def llava_prompt(loaded: LoadedModel, prompt: str, num_images: int) -> str:
    """The prompt of a LLaVA-family model: its chat template, else the LLaVA-1.5 form.

    A prompt that already holds the ``<image>`` placeholder is kept as it is.
    """
    image_token = loaded.processor.image_token
    if image_token in prompt:
        return prompt
    templated = chat_template_prompt(loaded.processor, prompt, ["image"] * num_images)
    if templated is not None:
        return templated
    images = "".join([image_token] * num_images)
    return FALLBACK_TEMPLATE.format(image=images, prompt=prompt)
