"""The Mistral 3 adapter: ``Mistral3ForConditionalGeneration`` with Pixtral vision.

Resolution is native: the Pixtral image processor keeps the image's aspect ratio, scales
it down only when its longer side passes ``longest_edge`` (1540 px published), and
resizes it to a whole number of ``patch x spatial_merge_size`` cells (28 px published)
on each side, without cropping; ``image_sizes`` holds the processed ``(height, width)``.
The Pixtral tower reads 14 px patches, and the projector's patch merger turns each 2 x 2
block of them into one language-model token. The processor writes, row by row, one
``[IMG]`` per merged token, an ``[IMG_BREAK]`` at the end of each row and ``[IMG_END]``
in place of the last row's break.

The method's definition on Mistral 3 (docs/architectures.md): V is every ``[IMG]``
position, one ``rows x cols`` grid per image over the whole original image;
``[IMG_BREAK]`` and ``[IMG_END]`` are row ends inside the image block, on no patch and
no text: they are in neither V nor ``T_set``, like LLaVA-NeXT's newline tokens. The
explained attention is the Mistral decoder's causal self-attention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import PlaceholderRule, image_blocks
from dexar_core.hf.generative import image_prompt
from dexar_core.hf.loading import to_model
from dexar_core.records import ImageFacts, LoadedModel, PreparedPrompt, PromptFacts

FALLBACK_TEMPLATE = "[INST]{images}{prompt}[/INST]"
"""The Mistral instruct turn, used when the processor has no chat template."""


def merged_grid(config: Any, height: int, width: int) -> tuple[int, int]:
    """``(rows, cols)`` of merged tokens of an image processed to ``height x width``."""
    cell = int(config.vision_config.patch_size) * int(config.spatial_merge_size)
    return height // cell, width // cell


@attrs.frozen
class MergedPatchRows(PlaceholderRule):
    """Mistral 3's image tokens: per image, rows of ``[IMG]`` each ended by a separator.

    An :class:`~dexar_core.hf.facts.ImageTokenRule`; the grid of each image comes from
    the processor's ``image_sizes``, its positions from the ``[IMG]`` tokens in order.
    """

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """See :meth:`ImageTokenRule.image_facts`."""
        config = loaded.model.config
        sizes = [tuple(int(v) for v in size) for size in inputs["image_sizes"].tolist()]
        grids = [merged_grid(config, height, width) for height, width in sizes]
        counts = [rows * cols for rows, cols in grids]
        blocks = image_blocks(
            inputs, int(config.image_token_id), counts, images, placeholder="[IMG]"
        )
        return tuple(
            ImageFacts(
                name=f"image {index}",
                image_index=index,
                positions=block,
                rows=rows,
                cols=cols,
                pixel_box=(0.0, 0.0, float(image.size[0]), float(image.size[1])),
            )
            for index, (image, (rows, cols), block) in enumerate(zip(images, grids, blocks))
        )


class Mistral3Adapter(HFDecoderOnlyAdapter):
    """Adapter for ``Mistral3ForConditionalGeneration`` (Mistral Small 3.1 and later)."""

    name = "mistral3"
    model_class = "Mistral3ForConditionalGeneration"
    image_tokens = MergedPatchRows()
    template_writes_bos = True

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """Apply the chat template, or the ``[INST]`` turn; a prompt with ``[IMG]`` is kept."""
        return image_prompt(loaded.processor, prompt, num_images, FALLBACK_TEMPLATE)

    def completed_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], facts: PromptFacts
    ) -> PromptFacts:
        """The shared facts, with the row ends among the image-block tokens (so they are
        in neither V nor ``T_set``, and never generated)."""
        processor = loaded.processor
        row_ends = {int(processor.image_break_token_id), int(processor.image_end_token_id)}
        return attrs.evolve(facts, image_token_ids=facts.image_token_ids | row_ends)

    def prepare_perturbed(
        self, loaded: LoadedModel, prepared: PreparedPrompt, images: Sequence[Any]
    ) -> PreparedPrompt:
        """See :meth:`GenerativeAdapter.prepare_perturbed`; the images are resized to
        whole merged cells, as the processor does."""
        processor = loaded.processor
        cell = int(processor.patch_size) * int(processor.spatial_merge_size)
        pixels = processor.image_processor(
            images=list(images),
            return_tensors="pt",
            patch_size={"height": cell, "width": cell},
        )
        outputs = {"pixel_values": pixels["pixel_values"], "image_sizes": pixels["image_sizes"]}
        return attrs.evolve(
            prepared,
            inputs={**prepared.inputs, **to_model(outputs, loaded.model, ("pixel_values",))},
            image_sizes=tuple(image.size for image in images),
        )
