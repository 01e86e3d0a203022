"""The Gemma 3 adapter: ``Gemma3ForConditionalGeneration`` (fixed soft tokens per image).

Gemma 3's image processor resizes every image to one fixed square (896 px published)
without cropping; the SigLIP tower cuts it into patches (64 x 64) and the projector
average-pools them to a square grid of ``mm_tokens_per_image`` soft tokens (16 x 16 =
256, a 4 x 4 pool). The processor expands each ``<start_of_image>`` the prompt holds into
``<start_of_image>``, the soft-token placeholders (``config.image_token_id``, not the
processor's ``image_token_id``, which is ``<start_of_image>``) and ``<end_of_image>``.

With pan-and-scan (``do_pan_and_scan``, off in the published processor) a wide or tall
image is also cut into 2 to ``pan_and_scan_max_num_crops`` crops side by side along its
long axis, each resized to the same square and given a block of its own after the
whole image's block. dexar gives one grid per block: ``image i`` over the whole image,
and ``image i, crop k`` over the part of the original image crop ``k`` holds, so each
crop's map lies where the crop came from.

The method's definition on Gemma 3 (docs/architectures.md):

* V is every soft token; ``<start_of_image>`` and ``<end_of_image>`` are text-vocabulary
  markers around each block, on no patch: never visual, in ``T_set`` like Qwen-VL's
  vision markers (and the position ``official_compat`` leaves out after each block).
* Image tokens attend to each other in both directions (``token_type_ids``); the
  explained rows are the answer's, which attend causally, so V and ``T_set`` are those of
  a causal decoder: the two-way block only changes what the visual keys hold.
* Sliding-window layers (5 of every 6 published) let an answer row see only the last
  ``sliding_window`` keys: keys out of the window get no gradient in those layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
import numpy as np

from dexar_core.errors import InputError
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import PlaceholderRule, equal_grids
from dexar_core.hf.generative import image_prompt
from dexar_core.hf.loading import to_model
from dexar_core.records import ImageFacts, LoadedModel, PreparedPrompt

PAN_AND_SCAN = (
    "do_pan_and_scan",
    "pan_and_scan_min_crop_size",
    "pan_and_scan_max_num_crops",
    "pan_and_scan_min_ratio_to_activate",
)
"""The image processor's pan-and-scan settings."""

FALLBACK_TEMPLATE = "<start_of_turn>user\n{images}{prompt}<end_of_turn>\n<start_of_turn>model\n"
"""The Gemma 3 turn format, used when the processor has no chat template."""

Box = tuple[float, float, float, float]


def pan_and_scan_settings(processor: Any) -> dict[str, Any]:
    """The pan-and-scan settings the explanation runs with.

    A value saved in the image processor's config wins; where it is null (as published)
    the processor's own default applies. dexar passes them to the processor explicitly:
    the processor's defaults would otherwise override the image processor's saved values.
    """
    defaults = dict(getattr(processor, "images_kwargs", {}) or {})
    image_processor = processor.image_processor
    settings = {}
    for key in PAN_AND_SCAN:
        saved = getattr(image_processor, key, None)
        settings[key] = defaults.get(key) if saved is None else saved
    settings["do_pan_and_scan"] = bool(settings["do_pan_and_scan"])
    return settings


def pan_and_scan_crops(size: tuple[int, int], settings: Mapping[str, Any]) -> tuple[Box, ...]:
    """The boxes of an image's pan-and-scan crops in original pixels, none where it has none.

    Gemma 3 cuts only images whose long side is at least ``min_ratio_to_activate`` times
    the short side, into about ``long / short`` equal crops along the long side (at least
    2, at most ``max_num_crops``, none narrower than ``min_crop_size``); the last crop
    stops at the image's edge.
    """
    if not settings["do_pan_and_scan"]:
        return ()
    width, height = size
    long_side, short_side = max(width, height), min(width, height)
    if long_side / short_side < settings["pan_and_scan_min_ratio_to_activate"]:
        return ()
    min_crop = int(settings["pan_and_scan_min_crop_size"])
    count = min(math.floor(long_side / short_side + 0.5), long_side // min_crop)
    count = min(max(2, count), int(settings["pan_and_scan_max_num_crops"]))
    crop = math.ceil(long_side / count)
    if min(crop, short_side) < min_crop:
        return ()
    spans = [(k * crop, min((k + 1) * crop, long_side)) for k in range(count)]
    if width >= height:
        return tuple((float(a), 0.0, float(b), float(height)) for a, b in spans)
    return tuple((0.0, float(a), float(width), float(b)) for a, b in spans)


@attrs.frozen
class SoftTokenImages(PlaceholderRule):
    """Gemma 3's image tokens: a square grid of soft tokens per image and per crop.

    An :class:`~dexar_core.hf.facts.ImageTokenRule`; each image's blocks are the whole
    image's, then its pan-and-scan crops', in the order the processor writes them.
    """

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """See :meth:`ImageTokenRule.image_facts`."""
        config = loaded.model.config
        side = math.isqrt(int(config.mm_tokens_per_image))
        settings = pan_and_scan_settings(loaded.processor)
        views: list[tuple[str, int, Box]] = []
        for index, image in enumerate(images):
            width, height = image.size
            views.append((f"image {index}", index, (0.0, 0.0, float(width), float(height))))
            for number, box in enumerate(pan_and_scan_crops(image.size, settings)):
                views.append((f"image {index}, crop {number}", index, box))
        ids = inputs["input_ids"][0].cpu().numpy()
        positions = np.flatnonzero(ids == int(config.image_token_id))
        if positions.size != len(views) * side * side or len(inputs["pixel_values"]) != len(views):
            raise InputError(
                f"the prompt holds {positions.size} soft image tokens but {len(images)} "
                f"image(s) make {len(views)} block(s) of {side * side}; put exactly one "
                "<start_of_image> per image in the prompt (or none, to let dexar apply the "
                "template), with the processor saved with the model."
            )
        return tuple(equal_grids(positions, side, side, views))


class Gemma3Adapter(HFDecoderOnlyAdapter):
    """Adapter for ``Gemma3ForConditionalGeneration`` (Gemma 3 4B and larger)."""

    name = "gemma3"
    model_class = "Gemma3ForConditionalGeneration"
    image_tokens = SoftTokenImages()
    template_writes_bos = True
    # answer tokens are text (token type 0): they attend causally
    answer_token_types = MappingProxyType({"token_type_ids": 0})

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """Apply the chat template, or the Gemma turn format; a prompt holding
        ``<start_of_image>`` is kept as written."""
        return image_prompt(
            loaded.processor,
            prompt,
            num_images,
            FALLBACK_TEMPLATE,
            placeholder=loaded.processor.boi_token,
        )

    def processor_options(self, loaded: LoadedModel, text: str) -> dict[str, Any]:
        """The shared options (no second ``<bos>`` after the chat template's own) and
        the pan-and-scan settings."""
        options = super().processor_options(loaded, text)
        return {**options, **pan_and_scan_settings(loaded.processor)}

    def prepare_perturbed(
        self, loaded: LoadedModel, prepared: PreparedPrompt, images: Sequence[Any]
    ) -> PreparedPrompt:
        """See :meth:`GenerativeAdapter.prepare_perturbed`; the crops are cut as in
        :meth:`prepare`."""
        pixels = loaded.processor.image_processor(
            images=list(images), return_tensors="pt", **pan_and_scan_settings(loaded.processor)
        )
        return attrs.evolve(
            prepared,
            inputs={
                **prepared.inputs,
                **to_model(
                    {"pixel_values": pixels["pixel_values"]}, loaded.model, ("pixel_values",)
                ),
            },
            image_sizes=tuple(image.size for image in images),
        )
