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
from types import MappingProxyType
from typing import Any

import attrs

from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import ImageTokenConvention, whole_image
from dexar_core.records import LoadedModel, PreparedPrompt, TeacherForcedPass


# --8<-- [start:adapter]
class PaliGemmaAdapter(HFDecoderOnlyAdapter):
    """Adapter for ``PaliGemmaForConditionalGeneration``."""

    name = "paligemma"
    model_class = "PaliGemmaForConditionalGeneration"
    # one block of (size / patch)^2 image tokens per image; SigLIP resizes to a square
    # without cropping, so each grid covers the whole original image
    image_tokens = ImageTokenConvention(
        pixel_box=whole_image,
        hint="put one '<image>' per image at the start of the prompt, or none",
    )
    # answer tokens are token type 1: they attend causally, outside the prefix
    answer_token_types = MappingProxyType({"token_type_ids": 1})

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
