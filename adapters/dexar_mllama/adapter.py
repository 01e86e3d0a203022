"""The Llama 3.2 Vision (mllama) adapter: DEX-AR on the decoder's cross-attention.

``MllamaForConditionalGeneration`` puts no image tokens in the sequence (one
``<|image|>`` marks where an image enters the conversation). The image enters through
the gated cross-attention layers (layers 3, 8, ..., 38 of the published 40): their
queries are the text positions, their keys the vision tower's features. So, as for an
encoder-decoder (docs/method.md §8):

- the explained attention is the cross-attention of those layers, and only of those:
  the self-attention layers see no visual key, so V would be empty there and every head
  weight 0. ``layers="all"`` is the cross-attention layers, ``layers=k`` the last ``k``
  of them, and the logit-lens target ``s^{l,t}`` is read at the output of cross-attention
  layer ``l``;
- the key sequence is the vision features, ``images x max_tiles x (1 + patches)``: per
  tile a CLS feature, then the ``(tile / patch)^2`` patches row-major. V is the patches of
  the image's real tiles, assembled into one grid per image where the tiles came from
  (the processor resizes the image to fit a canvas of up to 4 tiles of 560 pixels,
  keeping its aspect ratio, and pads it right and below); cells that lie wholly in that
  padding, the CLS features and the padding tiles (which the cross-attention mask hides)
  are in neither V nor ``T_set``;
- ``T_set`` is empty: every key of a cross-attention is a feature of the image, none is
  text. ``S_text`` is 0, so a head's weight is ``ReLU(S_v)`` (heads weighted by how much
  the token depends on what they read of the image) and the token weight
  ``delta^t = max S_v``: the paper's contrast of visual against textual dependence has no
  counterpart here, and ``delta`` does not separate visual from function words as it
  does on a decoder-only model. That part of the method is not faithful on mllama.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import torch

from dexar_core.errors import InputError, LayoutError
from dexar_core.hf.decoder_only import HFDecoderOnlyAdapter
from dexar_core.hf.facts import PlaceholderRule
from dexar_core.hf.generative import chat_template_prompt
from dexar_core.interfaces import VisualTokenLocator
from dexar_core.records import (
    DecoderParts,
    ImageFacts,
    LoadedModel,
    PreparedPrompt,
    PromptFacts,
    TeacherForcedPass,
)
from dexar_core.values import VisualLayout

IMAGE_TOKEN = "<|image|>"

FALLBACK_TEMPLATE = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{images}{prompt}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
"""The Llama 3.2 Vision Instruct turn, used when the processor has no chat template."""


def canvas_cells(image_processor: Any, config: Any, size: tuple[int, int]) -> dict[str, Any]:
    """Where an image lands on the tile canvas, as the image processor resizes it.

    Returns:
        ``tiles`` (rows, cols of tiles), ``cells`` (rows, cols of patches that touch the
        resized image), ``per_tile`` (patches per tile side) and ``box`` (the pixel box
        in the original image those cells cover).
    """
    from transformers.models.mllama.image_processing_pil_mllama import (
        get_image_size_fit_to_canvas,
        get_optimal_tiled_canvas,
    )

    width, height = size
    tile = int(image_processor.size["height"])
    patch = int(config.vision_config.patch_size)
    canvas_height, canvas_width = get_optimal_tiled_canvas(
        image_height=height,
        image_width=width,
        max_image_tiles=int(image_processor.max_image_tiles),
        tile_size=tile,
    )
    new_height, new_width = get_image_size_fit_to_canvas(
        image_height=height,
        image_width=width,
        canvas_height=canvas_height,
        canvas_width=canvas_width,
        tile_size=tile,
    )
    rows, cols = math.ceil(new_height / patch), math.ceil(new_width / patch)
    box = (0.0, 0.0, cols * patch * width / new_width, rows * patch * height / new_height)
    return {
        "tiles": (canvas_height // tile, canvas_width // tile),
        "cells": (rows, cols),
        "per_tile": tile // patch,
        "box": box,
    }


def grid_keys(layout: Mapping[str, Any], image_index: int, max_tiles: int) -> np.ndarray:
    """The key of each cell of an image's grid (row-major over the assembled tiles).

    Args:
        layout: the image's :func:`canvas_cells`.
        image_index: which image (the keys hold ``max_tiles`` tile slots per image).
        max_tiles: tile slots per image, padding tiles included.
    """
    per_tile = layout["per_tile"]
    rows, cols = layout["cells"]
    row, col = np.divmod(np.arange(rows * cols), cols)
    tile = (row // per_tile) * layout["tiles"][1] + col // per_tile
    # each tile's keys: its CLS feature, then its patches row-major
    within = 1 + (row % per_tile) * per_tile + col % per_tile
    return (image_index * max_tiles + tile) * (per_tile * per_tile + 1) + within


class MllamaTiles(PlaceholderRule):
    """The keys of mllama's cross-attention: one grid per image over its tiles (an
    :class:`~dexar_core.hf.facts.ImageTokenRule`; positions index the vision keys)."""

    def image_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], images: Sequence[Any]
    ) -> tuple[ImageFacts, ...]:
        """One grid per image, its tiles placed where they came from."""
        config = loaded.model.config
        markers = int((inputs["input_ids"][0] == int(config.image_token_id)).sum())
        if markers != len(images):
            raise InputError(
                f"the prompt holds {markers} {IMAGE_TOKEN} marker(s) but {len(images)} "
                f"image(s) were given; put one {IMAGE_TOKEN} per image, or none to let dexar "
                "apply the chat template."
            )
        image_processor = loaded.processor.image_processor
        max_tiles = int(image_processor.max_image_tiles)
        real_tiles = inputs["aspect_ratio_mask"][0].sum(dim=-1).tolist()
        facts = []
        for index, image in enumerate(images):
            layout = canvas_cells(image_processor, config, image.size)
            tile_rows, tile_cols = layout["tiles"]
            if tile_rows * tile_cols != real_tiles[index]:
                raise LayoutError(
                    f"image {index}: the processor made {real_tiles[index]} tiles but its "
                    f"resize gives {tile_rows}x{tile_cols}; the image processor's settings "
                    "disagree with its outputs."
                )
            rows, cols = layout["cells"]
            facts.append(
                ImageFacts(
                    name=f"image {index}",
                    image_index=index,
                    positions=grid_keys(layout, index, max_tiles),
                    rows=rows,
                    cols=cols,
                    pixel_box=layout["box"],
                )
            )
        return tuple(facts)


@attrs.frozen(kw_only=True)
class CrossAttentionFacts(PromptFacts):
    """The prompt's facts and the length of the cross-attention's key sequence.

    Attributes:
        key_length: ``images x max_tiles x (1 + patches per tile)`` vision features.
    """

    key_length: int


class CrossAttentionLocator(VisualTokenLocator):
    """V over the cross-attention keys; ``T_set`` empty (no key is text)."""

    def locate(self, prepared: PreparedPrompt) -> VisualLayout:
        """See :meth:`VisualTokenLocator.locate`."""
        keys = key_length(prepared)
        visual = np.zeros(keys, dtype=bool)
        for grid in prepared.facts.grids:
            visual[grid.positions] = True
        nothing = np.zeros(keys, dtype=bool)
        return VisualLayout(
            visual_mask=visual, text_mask=nothing, template_mask=nothing, grids=prepared.facts.grids
        )


def key_length(prepared: PreparedPrompt) -> int:
    """The cross-attention's key length the prepared prompt's facts state.

    Raises:
        LayoutError: the prompt was not prepared by :class:`MllamaAdapter`.
    """
    if not isinstance(prepared.facts, CrossAttentionFacts):
        raise LayoutError(
            "the cross-attention keys are known only from the facts MllamaAdapter.prepare "
            "states; prepare the prompt with the mllama adapter."
        )
    return prepared.facts.key_length


class MllamaAdapter(HFDecoderOnlyAdapter):
    """Adapter for Llama 3.2 Vision: DEX-AR on the cross-attention layers."""

    name = "mllama"
    model_class = "MllamaForConditionalGeneration"
    image_tokens = MllamaTiles()
    # The answer rows are cheap next to the vision tower: one full pass, no prompt cache
    # (the cached cross-attention keys would need the prompt's mask sliced by hand).
    prompt_cache = False

    def __init__(self) -> None:
        super().__init__()
        self.locator = CrossAttentionLocator()

    def cross_attention_layers(self, model: Any) -> list[int]:
        """The decoder layers that cross-attend to the image."""
        return sorted(int(i) for i in model.config.text_config.cross_attention_layers)

    def format_prompt(self, loaded: LoadedModel, prompt: str, num_images: int) -> str:
        """The chat-template prompt: the images, then the text (one turn)."""
        if IMAGE_TOKEN in prompt:
            return prompt
        templated = chat_template_prompt(loaded.processor, prompt, ["image"] * num_images)
        if templated is not None:
            return templated
        return FALLBACK_TEMPLATE.format(images=IMAGE_TOKEN * num_images, prompt=prompt)

    def processor_options(self, loaded: LoadedModel, text: str) -> dict[str, Any]:
        """The prompt already holds the BOS, so the processor adds none."""
        return {"add_special_tokens": False}

    def extend_inputs(self, prepared: PreparedPrompt, answer_length: int) -> dict[str, Any]:
        """Answer tokens see the tiles the prompt's last token sees."""
        mask = prepared.inputs["cross_attention_mask"]
        answer = mask[:, -1:].expand(-1, answer_length, -1, -1)
        return {"cross_attention_mask": torch.cat([mask, answer], dim=1)}

    def completed_facts(
        self, loaded: LoadedModel, inputs: Mapping[str, Any], facts: PromptFacts
    ) -> PromptFacts:
        """See :meth:`HFGenerativeAdapter.completed_facts`; the facts add the key length."""
        pixels = inputs["pixel_values"]
        keys = int(pixels.shape[1] * pixels.shape[2]) * int(
            loaded.model.model.vision_model.num_patches
        )
        return CrossAttentionFacts(**attrs.asdict(facts, recurse=False), key_length=keys)

    def teacher_forced(
        self, loaded: LoadedModel, prepared: PreparedPrompt, answer_ids: Sequence[int]
    ) -> TeacherForcedPass:
        """See :meth:`GenerativeAdapter.teacher_forced`; the keys are the vision features."""
        forced = super().teacher_forced(loaded, prepared, answer_ids)
        return attrs.evolve(forced, key_length=key_length(prepared))

    def decoder_parts(self, model: Any) -> DecoderParts:
        """The cross-attention layers only, with the decoder's final norm and head."""
        decoder = self.language_model(model)
        layers = [decoder.layers[index] for index in self.cross_attention_layers(model)]
        head = model.get_output_embeddings()
        return DecoderParts(
            layers=layers,
            attentions=[layer.cross_attn for layer in layers],
            final_norm=decoder.norm,
            lm_head_weight=head.weight,
        )

    def describe(self) -> dict[str, Any]:
        """The adapter, its class, and what it explains."""
        return {
            "adapter": self.name,
            "model_class": self.model_class,
            "explained_attention": "cross-attention layers; T_set empty (docs/architectures.md)",
        }
