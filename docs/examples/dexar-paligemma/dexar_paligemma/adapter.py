"""The PaliGemma adapter: ``PaliGemmaForConditionalGeneration`` (PaliGemma 1 and 2).

PaliGemma puts the image first: the processor writes ``image_seq_length`` image tokens,
then ``<bos>``, the prompt and a newline. The image tokens and the prompt form a prefix
that attends to itself in both directions; the answer (token type 1) attends causally.
The SigLIP image processor resizes the image to a fixed square without cropping, so the
``(size / patch) x (size / patch)`` patch grid covers the whole original image, row by
row from the top left. The head is tied to the token embeddings, and PaliGemma 2's
Gemma 2 decoder soft-caps its final logits (``final_logit_softcapping``), which
:class:`~dexar_core.hf.decoder_only.HFDecoderOnlyAdapter` reads from the text config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

from dexar_core.errors import InputError
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.records import LoadedModel, PreparedPrompt, TeacherForcedPass
from dexar_core.values import Grid


# --8<-- [start:adapter]
class PaliGemmaAdapter(HFDecoderOnlyAdapter):
    """Adapter for ``PaliGemmaForConditionalGeneration``."""

    name = "paligemma"
    model_class = "PaliGemmaForConditionalGeneration"

    def language_model(self, model: Any) -> Any:
        """The Gemma (or Gemma 2) decoder stack: ``layers`` and the final ``norm``."""
        return model.model.language_model

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """Image tokens first, then the prompt; the processor adds ``<bos>`` and ``\\n``."""
        image_token = loaded.processor.image_token
        if image_token in prompt:
            return prompt
        return image_token * num_images + prompt

    def processor_inputs(
        self, loaded: LoadedModel, text: str, images: Sequence[Any]
    ) -> dict[str, Any]:
        """The processor's tensors without ``labels`` (it writes them for fine-tuning)."""
        inputs = dict(loaded.processor(text=text, images=list(images), return_tensors="pt"))
        inputs.pop("labels", None)
        return inputs

    def image_facts(
        self, loaded: LoadedModel, inputs: dict[str, Any], images: Sequence[Any]
    ) -> dict[str, Any]:
        """The patch grid from the processed pixels, checked against the prompt's tokens."""
        config = loaded.model.config
        image_token_id = int(config.image_token_id)
        patch = int(config.vision_config.patch_size)
        pixel_height, pixel_width = inputs["pixel_values"].shape[-2:]
        rows, cols = int(pixel_height) // patch, int(pixel_width) // patch
        placeholders = int(np.count_nonzero(inputs["input_ids"][0].numpy() == image_token_id))
        if placeholders != rows * cols * len(images):
            raise InputError(
                f"the prompt holds {placeholders} image tokens but {len(images)} image(s) of "
                f"{rows * cols} tokens each were given; put one '<image>' per image at the "
                "start of the prompt, or none to let dexar place them."
            )
        return {"image_token_ids": {image_token_id}, "paligemma_grid": (rows, cols)}

    def grids(self, prepared: PreparedPrompt) -> tuple[Grid, ...]:
        """One ``rows x cols`` grid per image, each covering its whole original image."""
        rows, cols = prepared.extras["paligemma_grid"]
        ids = prepared.inputs["input_ids"][0].cpu().numpy()
        positions = np.flatnonzero(np.isin(ids, list(prepared.extras["image_token_ids"])))
        per_image = rows * cols
        return tuple(
            Grid(
                name=f"image {index}",
                height=rows,
                width=cols,
                positions=positions[index * per_image : (index + 1) * per_image],
                pixel_box=(0.0, 0.0, float(width), float(height)),
                image_index=index,
            )
            for index, (width, height) in enumerate(prepared.image_sizes)
        )

    def extend_inputs(self, prepared: PreparedPrompt, answer_length: int) -> dict[str, Any]:
        """Answer tokens are token type 1: they attend causally, outside the prefix."""
        token_types = prepared.inputs["token_type_ids"]
        answer_types = torch.ones(
            (token_types.shape[0], answer_length),
            dtype=token_types.dtype,
            device=token_types.device,
        )
        return {"token_type_ids": torch.cat([token_types, answer_types], dim=1)}

    def teacher_forced(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer_ids: Sequence[int]
    ) -> TeacherForcedPass:
        """The shared pass, without the prompt cache where a sliding window is shorter
        than the prompt."""
        forced = super().teacher_forced(loaded, prepared, answer_ids)
        window = getattr(loaded.model.config.get_text_config(), "sliding_window", None)
        if window is not None and prepared.inputs["input_ids"].shape[1] > window:
            # The prompt's last row attends to the whole prefix in the full pass, but
            # only to its window when it runs again after a cached prompt.
            return attrs.evolve(forced, prompt_inputs=None)
        return forced


# --8<-- [end:adapter]
