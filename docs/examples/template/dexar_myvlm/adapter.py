"""The MyVLM adapter: where the decoder is, how the prompt is written, where V lies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.records import LoadedModel, PreparedPrompt
from dexar_core.values import Grid


class MyVlmAdapter(HFDecoderOnlyAdapter):
    """Adapter for ``MyVlmForConditionalGeneration``."""

    name = "myvlm"
    model_class = "MyVlmForConditionalGeneration"  # a class exported by transformers

    def language_model(self, model: Any) -> Any:
        """The decoder stack: a module with ``layers`` and the final ``norm``."""
        return model.model.language_model

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """The prompt with the model's template and one image placeholder per image."""
        image_token = loaded.processor.image_token
        if image_token in prompt:
            return prompt
        return image_token * num_images + prompt

    def image_facts(
        self, loaded: LoadedModel, inputs: dict[str, Any], images: Sequence[Any]
    ) -> dict[str, Any]:
        """What ``grids`` needs, from the processor's outputs (never hard-coded counts)."""
        config = loaded.model.config
        patch = int(config.vision_config.patch_size)
        height, width = inputs["pixel_values"].shape[-2:]
        return {
            "image_token_ids": {int(config.image_token_id)},
            "myvlm_grid": (int(height) // patch, int(width) // patch),
        }

    def grids(self, prepared: PreparedPrompt) -> tuple[Grid, ...]:
        """One grid per image over the image tokens, row-major from the top left."""
        rows, cols = prepared.extras["myvlm_grid"]
        ids = prepared.inputs["input_ids"][0].cpu().numpy()
        positions = np.flatnonzero(np.isin(ids, list(prepared.extras["image_token_ids"])))
        return tuple(
            Grid(
                name=f"image {index}",
                height=rows,
                width=cols,
                positions=positions[index * rows * cols : (index + 1) * rows * cols],
                # the part of the original image the grid covers, after resize and crop
                pixel_box=(0.0, 0.0, float(width), float(height)),
                image_index=index,
            )
            for index, (width, height) in enumerate(prepared.image_sizes)
        )
