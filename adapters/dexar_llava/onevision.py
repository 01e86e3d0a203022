"""The LLaVA-OneVision adapter: ``LlavaOnevisionForConditionalGeneration``.

LLaVA-OneVision lays an image out as LLaVA-NeXT does (:mod:`dexar_llava.next`): the base
image resized whole to one tile, then the tiles of the best ``image_grid_pinpoints``
resolution laid side by side, the padding's rows or columns removed, one learned
``image_newline`` token after each row. Two things differ:

* *anyres-max*: where the unpadded grid holds more than about
  ``vision_aspect_ratio = "anyres_max_N"`` tiles' worth of features (N = 9 published),
  the model shrinks it bilinearly by ``ratio = sqrt(rows * cols / (N * side^2))``
  before adding the newlines; the smaller grid covers the same part of the image;
* an image among several in one prompt is shown as its base view only, followed by one
  newline token.

dexar reports, for a prompt of one image, the grids ``image 0, base`` (the whole image)
and ``image 0, tiles`` (the tiles assembled into one map, shrunk where anyres-max
shrinks them); for several images one grid ``image i`` each. The newline tokens lie on
no patch and carry no text: in neither V nor ``T_set`` (docs/method.md §8). The published
model's SigLIP tower has no CLS feature: its ``"full"`` feature selection keeps every
patch (27 x 27 per 384 px tile). Videos (frames pooled 2 x 2, one newline after the
last frame) are refused with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dexar_core.errors import UnsupportedModelError
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import PlaceholderRule, image_blocks
from dexar_core.hf.generative import image_prompt
from dexar_core.hf.loading import ServedModelType, to_model
from dexar_core.images import Video
from dexar_core.records import ImageFacts, LoadedModel, PreparedPrompt
from dexar_llava.next import HighResolutionGrid, base_facts, high_resolution_grid, tile_facts

FALLBACK_TEMPLATE = "<|im_start|>user {images}\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
"""The LLaVA-OneVision (Qwen2) chat form, used when the processor has no chat template."""


def max_tiles(config: Any) -> int:
    """N of ``vision_aspect_ratio = "anyres_max_N"``."""
    ratio = str(config.vision_aspect_ratio)
    if not ratio.startswith("anyres_max_") or not ratio[len("anyres_max_") :].isdigit():
        raise UnsupportedModelError(
            f"the llava_onevision adapter reads vision_aspect_ratio 'anyres_max_N' (as "
            f"published, 'anyres_max_9'); this model has {ratio!r}. Save the config with it."
        )
    return int(ratio[len("anyres_max_") :])


def shrunk_grid(config: Any, height: int, width: int) -> HighResolutionGrid:
    """The unpadded tile grid of an ``height x width`` image after anyres-max shrinking."""
    grid = high_resolution_grid(config, height, width)
    side = int(config.vision_config.image_size) // int(config.vision_config.patch_size)
    ratio = math.sqrt(grid.rows * grid.cols / (max_tiles(config) * side**2))
    if ratio <= 1.1:
        return grid
    # the model interpolates to (rows // ratio, cols // ratio) over the same region
    return attrs.evolve(grid, rows=int(grid.rows // ratio), cols=int(grid.cols // ratio))


@attrs.frozen
class OneVisionImageTokens(PlaceholderRule):
    """LLaVA-OneVision's image tokens (an :class:`~dexar_core.hf.facts.ImageTokenRule`):
    a base grid and a shrunk tile grid for a lone image, a base grid for each of several."""

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """See :meth:`ImageTokenRule.image_facts`; each image's block in prompt order."""
        config = loaded.model.config
        side = int(config.vision_config.image_size) // int(config.vision_config.patch_size)
        sizes = [tuple(int(v) for v in size) for size in inputs["image_sizes"].tolist()]
        # the model tiles an image only where it is its prompt's one image
        tiled = [int(n) for n in inputs["batch_num_images"].tolist()] == [1]
        grids = [shrunk_grid(config, *size) for size in sizes] if tiled else []
        counts = (
            [side * side + grid.rows * (grid.cols + 1) for grid in grids]
            if tiled
            else [side * side + 1] * len(sizes)
        )
        blocks = image_blocks(
            inputs, int(config.image_token_id), counts, images, placeholder="<image>"
        )
        facts: list[ImageFacts] = []
        for index, (image, block) in enumerate(zip(images, blocks)):
            name = f"image {index}, base" if tiled else f"image {index}"
            facts.append(base_facts(index, block, side, image, name=name))
            if tiled:
                facts.append(tile_facts(index, block, side, grids[index]))
        return tuple(facts)


class LlavaOnevisionAdapter(HFDecoderOnlyAdapter):
    """Adapter for ``LlavaOnevisionForConditionalGeneration`` (images; videos refused)."""

    name = "llava_onevision"
    model_class = "LlavaOnevisionForConditionalGeneration"
    image_tokens = OneVisionImageTokens()
    served_model_type = ServedModelType(
        family="LLaVA-OneVision",
        model_type="llava_onevision",
        instead="`dexar plugins` lists the adapter for each model type.",
    )

    def check_config(self, config: Any) -> None:
        """See :meth:`HFGenerativeAdapter.check_config`: the anyres-max setting is read."""
        max_tiles(config)

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """Apply the chat template, or the Qwen2 form; a prompt with ``<image>`` is kept."""
        return image_prompt(loaded.processor, prompt, num_images, FALLBACK_TEMPLATE)

    def processor_inputs(
        self, loaded: LoadedModel, text: str, images: Sequence[Any]
    ) -> dict[str, Any]:
        """The processor's tensors, the images given as one prompt's (nested), so that
        several are shown as base views, as LLaVA-OneVision was trained on them."""
        return dict(loaded.processor(text=text, images=[list(images)], return_tensors="pt"))

    def prepare_perturbed(
        self, loaded: LoadedModel, prepared: PreparedPrompt, images: Sequence[Any]
    ) -> PreparedPrompt:
        """See :meth:`GenerativeAdapter.prepare_perturbed`; the images nested as in
        :meth:`processor_inputs`."""
        pixels = dict(loaded.processor.image_processor(images=[list(images)], return_tensors="pt"))
        return attrs.evolve(
            prepared,
            inputs={**prepared.inputs, **to_model(pixels, loaded.model, self.pixel_keys)},
            image_sizes=tuple(image.size for image in images),
        )

    def prepare(self, loaded: LoadedModel, images: Sequence[Any], prompt: str) -> PreparedPrompt:
        """See :meth:`ModelAdapter.prepare`; videos are refused with the reason.

        Raises:
            UnsupportedModelError: a video was given.
        """
        if any(isinstance(visual, Video) for visual in images):
            raise UnsupportedModelError(
                "the llava_onevision adapter explains images only: LLaVA-OneVision pools each "
                "video frame's features 2 x 2 and ends the whole video with one newline token, "
                "which dexar does not lay out on frame grids yet. Explain the frames as images "
                "(one image per prompt gives the tiled view, several give their base views)."
            )
        return super().prepare(loaded, images, prompt)
