"""The MyVLM adapter: where the decoder is, how the prompt is written, where V lies."""

from __future__ import annotations

from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import ImageTokenConvention
from dexar_core.records import LoadedModel


class MyVlmAdapter(HFDecoderOnlyAdapter):
    """Adapter for ``MyVlmForConditionalGeneration``."""

    name = "myvlm"
    model_class = "MyVlmForConditionalGeneration"  # a class exported by transformers
    # Where V lies, from the processor's outputs (never hard-coded counts): one block of
    # config.image_token_id tokens per image, a (pixels / patch_size) grid each, row-major
    # from the top left, covering the part of the image the resize and crop keep. Change
    # a field where your model differs (leading_tokens, grid, pixel_box, token_id).
    image_tokens = ImageTokenConvention()
    # the decoder stack: a module with ``layers`` and the final ``norm``
    language_model_path = "model.language_model"

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """The prompt with the model's template and one image placeholder per image."""
        image_token = loaded.processor.image_token
        if image_token in prompt:
            return prompt
        return image_token * num_images + prompt
