"""The InternVL adapter: ``InternVLForConditionalGeneration`` (the ``-hf`` checkpoints).

InternVL's processor (``crop_to_patches``) picks the tile arrangement ``cols x rows``
whose aspect ratio is closest to the image's among those of ``min_patches`` to
``max_patches`` tiles, stretches the image to ``cols*T x rows*T`` (``T`` the tile side,
448 px published) and cuts it into tiles, row-major; when there is more than one tile, a
*thumbnail*, the whole image resized to one tile, comes last. The vision tower sees each
view alone and pixel shuffle folds each ``2 x 2`` block of patches into one token, so a
view is ``n x n`` tokens, row-major (``n = T / patch * downsample_ratio``, 16 published).
Each image becomes ``<img>``, then ``n*n`` ``<IMG_CONTEXT>`` tokens per view, then
``</img>``: one flat block with no marker between the views, and no tile count kept by
the processor, so the arrangement is recomputed from the image processor's settings
with transformers' own function and checked against the block's length.

The method's definition here (docs/architectures.md): V is every ``<IMG_CONTEXT>``
position. Per image dexar reports the tiles assembled into one ``rows*n x cols*n`` grid
over the whole original image (each tile where it came from, the stretch undone) and the
thumbnail as its own ``n x n`` grid over the whole image; an image shown as one tile has
one grid. ``<img>`` and ``</img>`` carry no pixels: they are text of the template (in
``T_set``), never visual. Nothing is cropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from dexar_core.errors import InputError, UnsupportedModelError
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import PlaceholderRule, tiled_image_facts, token_runs
from dexar_core.hf.generative import image_prompt
from dexar_core.hf.loading import to_model
from dexar_core.images import Video
from dexar_core.records import ImageFacts, LoadedModel, PreparedPrompt

FALLBACK_TEMPLATE = "<|im_start|>user\n{images}\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
"""The InternVL chat form, used when the processor has no chat template."""


def tile_arrangement(image_processor: Any, width: int, height: int) -> tuple[int, int]:
    """``(rows, cols)`` of the tiles InternVL's image processor cuts an image into.

    ``(1, 1)`` where it shows the image as one view (no thumbnail then).
    """
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (
        get_optimal_tiled_canvas,
    )

    size = image_processor.size
    side = (size["height"], size["width"]) if isinstance(size, dict) else (size.height, size.width)
    cols, rows = get_optimal_tiled_canvas(
        (height, width), side, int(image_processor.min_patches), int(image_processor.max_patches)
    )
    return int(rows), int(cols)


class InternVLImageTokens(PlaceholderRule):
    """InternVL's image tokens: per image one block, its tiles row-major then the thumbnail."""

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """See :meth:`ImageTokenRule.image_facts`: per image its assembled tiles and its
        thumbnail (one grid where the image is one tile), its block cut by the tile count
        the image processor's settings give."""
        config = loaded.model.config
        vision = config.vision_config
        patch_rows = _first(vision.image_size) // _first(vision.patch_size)
        side = int(patch_rows * float(config.downsample_ratio))
        blocks = token_runs(inputs["input_ids"][0].cpu().numpy(), int(config.image_token_id))
        if len(blocks) != len(images):
            raise InputError(
                f"the prompt holds {len(blocks)} image block(s) but {len(images)} image(s) were "
                "given; put exactly one image placeholder per image in the prompt, or none to "
                "let dexar apply the template."
            )
        facts: list[ImageFacts] = []
        for index, (image, block) in enumerate(zip(images, blocks)):
            width, height = image.size
            rows, cols = tile_arrangement(loaded.processor.image_processor, width, height)
            views = rows * cols + (rows * cols > 1)
            if block.size not in (side * side, views * side * side):
                raise InputError(
                    f"image {index}'s block holds {block.size} image tokens but its {rows}x{cols} "
                    f"tiles{' and thumbnail' if views > 1 else ''} of {side}x{side} tokens make "
                    f"{views * side * side}; the processor's image_seq_length or tile settings "
                    "do not match the model. Save the processor with the model."
                )
            if block.size == side * side:
                # a processor told not to tile (crop_to_patches off) shows one view
                rows = cols = views = 1
            runs = np.split(block, views)
            facts.extend(tiled_image_facts(index, image.size, runs, (rows, cols), "thumbnail"))
        return tuple(facts)


def _first(value: Any) -> int:
    """The first entry of a ``(height, width)`` size, or the size itself."""
    return int(value[0] if isinstance(value, (list, tuple)) else value)


class InternVLAdapter(HFDecoderOnlyAdapter):
    """Adapter for ``InternVLForConditionalGeneration``: dynamic tiles plus a thumbnail."""

    name = "internvl"
    model_class = "InternVLForConditionalGeneration"
    image_tokens = InternVLImageTokens()

    def prepare(self, loaded: LoadedModel, images: Sequence[Any], prompt: str) -> PreparedPrompt:
        """Refuse videos (see :data:`VIDEO_REFUSAL`), then prepare the images."""
        if any(isinstance(item, Video) for item in images):
            raise UnsupportedModelError(VIDEO_REFUSAL)
        return super().prepare(loaded, images, prompt)

    def prepare_perturbed(
        self, loaded: LoadedModel, prepared: PreparedPrompt, images: Sequence[Any]
    ) -> PreparedPrompt:
        """See :meth:`GenerativeAdapter.prepare_perturbed`: the new pixels tiled as the
        processor tiles them (its ``crop_to_patches`` default, which the image processor
        alone does not have)."""
        pixels = loaded.processor.image_processor(
            images=list(images), **loaded.processor.images_kwargs, return_tensors="pt"
        )
        return attrs.evolve(
            prepared,
            inputs={
                **prepared.inputs,
                **to_model({"pixel_values": pixels["pixel_values"]}, loaded.model, self.pixel_keys),
            },
            image_sizes=tuple(image.size for image in images),
        )

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """Apply the chat template, or the InternVL form; a prompt with the placeholder is kept."""
        return image_prompt(loaded.processor, prompt, num_images, FALLBACK_TEMPLATE)


VIDEO_REFUSAL = (
    "the internvl adapter explains images only: InternVL's video input (each sampled frame "
    "one thumbnail-sized view after a 'FrameN:' line) is not supported, because dexar would "
    "have to name each frame's grid from the video processor's sampling, which it does not "
    "do yet. Pass the frames you want explained as images."
)
"""Why a video is refused, and what to do instead."""
