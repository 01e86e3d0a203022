"""The LLaVA adapter: LLaVA-1.5-style ``LlavaForConditionalGeneration`` models.

The processor expands each ``<image>`` placeholder in the prompt into one token per
vision patch (plus the CLS feature when ``vision_feature_select_strategy="full"``,
which lies on no grid and is left out of both V and the text set). The patches form an
``(H / patch) x (W / patch)`` grid in row-major order over the processed image, which
covers the original image after the processor's resize and centre crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dexar_core.errors import InputError, UnsupportedModelError
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.load_options import config_options
from dexar_core.hf.loading import resized_image_box
from dexar_core.records import LoadedModel, PreparedPrompt
from dexar_core.values import Grid

FALLBACK_TEMPLATE = "USER: {image}\n{prompt} ASSISTANT:"
"""The LLaVA-1.5 prompt form, used when the processor has no chat template."""


class LlavaAdapter(HFDecoderOnlyAdapter):
    """Adapter for ``LlavaForConditionalGeneration`` (LLaVA-1.5 layout)."""

    name = "llava"
    model_class = "LlavaForConditionalGeneration"

    def load(
        self, path: str, *, device: str | None, dtype: Any, device_map: Any, **options: Any
    ) -> LoadedModel:
        """Load a LLaVA checkpoint; LLaVA-NeXT's tiled images are refused with a reason."""
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(path, **config_options(options)).model_type
        except (OSError, ValueError):
            model_type = "llava"
        if model_type != "llava":
            raise UnsupportedModelError(
                f"the llava adapter serves LLaVA-1.5-style models (model_type 'llava'); "
                f"{path!r} is {model_type!r}. LLaVA-NeXT's any-resolution tiles are not "
                "supported yet: each tile would need its own grid. Use a LLaVA-1.5 "
                "checkpoint, or an adapter package for LLaVA-NeXT."
            )
        return super().load(path, device=device, dtype=dtype, device_map=device_map, **options)

    def language_model(self, model: Any) -> Any:
        """LLaVA's Llama (or other) decoder stack."""
        return model.model.language_model

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """Apply the chat template, or the LLaVA-1.5 form; a prompt with ``<image>`` is kept."""
        image_token = loaded.processor.image_token
        if image_token in prompt:
            return prompt
        if getattr(loaded.processor, "chat_template", None):
            content: list[dict[str, str]] = [{"type": "image"} for _ in range(num_images)]
            content.append({"type": "text", "text": prompt})
            return str(
                loaded.processor.apply_chat_template(
                    [{"role": "user", "content": content}], add_generation_prompt=True
                )
            )
        images = "".join([image_token] * num_images)
        return FALLBACK_TEMPLATE.format(image=images, prompt=prompt)

    def image_facts(
        self, loaded: LoadedModel, inputs: dict[str, Any], images: Sequence[Any]
    ) -> dict[str, Any]:
        """Patch grid, per-image token counts and the processed boxes."""
        config = loaded.model.config
        image_token_id = int(config.image_token_id)
        patch = int(config.vision_config.patch_size)
        pixel_height, pixel_width = inputs["pixel_values"].shape[-2:]
        ids = inputs["input_ids"][0].numpy()
        placeholders = int(np.count_nonzero(ids == image_token_id))
        rows, cols = pixel_height // patch, pixel_width // patch
        with_cls = config.vision_feature_select_strategy == "full"
        per_image = rows * cols + int(with_cls)
        if placeholders != per_image * len(images):
            raise InputError(
                f"the prompt holds {placeholders} image tokens but {len(images)} image(s) of "
                f"{per_image} tokens each were given; put exactly one '<image>' placeholder "
                "per image in the prompt (or none, to let dexar apply the template)."
            )
        boxes = [
            resized_image_box(loaded.processor.image_processor, image.size) for image in images
        ]
        return {
            "image_token_ids": {image_token_id},
            "llava_grid": (rows, cols, with_cls),
            "llava_boxes": boxes,
        }

    def grids(self, prepared: PreparedPrompt) -> tuple[Grid, ...]:
        """One ``rows x cols`` grid per image, skipping the CLS feature if present."""
        rows, cols, with_cls = prepared.extras["llava_grid"]
        ids = prepared.inputs["input_ids"][0].cpu().numpy()
        positions = np.flatnonzero(np.isin(ids, list(prepared.extras["image_token_ids"])))
        per_image = rows * cols + int(with_cls)
        grids = []
        for index, box in enumerate(prepared.extras["llava_boxes"]):
            block = positions[index * per_image : (index + 1) * per_image]
            grids.append(
                Grid(
                    name=f"image {index}",
                    height=rows,
                    width=cols,
                    positions=block[int(with_cls) :],
                    pixel_box=box,
                    image_index=index,
                )
            )
        return tuple(grids)
