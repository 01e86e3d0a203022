"""Offline builder of tiny InternVL models, for the conformance kit and the tests.

A tiny InternVL is a :class:`transformers.InternVLForConditionalGeneration` (InternViT
vision tower, pixel shuffle by 2 and an MLP projector, a Qwen2 language model) with a
real :class:`transformers.InternVLProcessor`. What the published ``OpenGVLab/InternVL3-1B-hf``
states about its image tokens is kept: dynamic tiling into 1 to 12 tiles with a thumbnail,
``<img>`` / ``</img>`` around the ``<IMG_CONTEXT>`` block, the Qwen chat form. Only depth,
width and the tile side (448 pixels there) are scaled down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.zoo.tiny_models import TILE_SIZES, check_sizes, instantiate, tiny_tokenizer

if TYPE_CHECKING:
    from transformers import InternVLForConditionalGeneration, InternVLProcessor

IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
"""The named special tokens InternVL's processor reads from its tokenizer."""

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\\n' }}{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""The Qwen chat form of the ``-hf`` checkpoints, one ``<IMG_CONTEXT>`` line per image."""


SIZES = TILE_SIZES
"""The tiny InternVL's sizes: 32 px tiles of 4x4 patches, width 64, a one-layer tower."""


def build_tiny_internvl(
    *, seed: int = 0, vocabulary: Iterable[str] | None = None, **sizes: Any
) -> tuple[InternVLForConditionalGeneration, InternVLProcessor]:
    """Build a randomly initialised tiny InternVL and its processor, offline.

    Args:
        seed: Seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: Words the tokenizer knows; defaults to the shapes benchmark's.
        **sizes: Over :data:`SIZES`: ``tile_size`` (one tile's and the thumbnail's side,
            in pixels), ``patch_size`` (the tower's; ``tile_size / patch_size`` must be
            even, for the pixel shuffle by 2), ``text_layers`` (Qwen2), ``hidden_size``
            (both widths) and ``heads`` (the language model's key/value heads are half).

    Returns:
        ``(model, processor)``: an ``InternVLForConditionalGeneration`` in eval mode and its
        ``InternVLProcessor``.

    Raises:
        InputError: a size is not a positive integer or does not divide as it must.
    """
    size = SIZES.given("build_tiny_internvl", sizes)
    tile_size, patch_size = size.image_size, size.patch_size
    check_sizes(
        "build_tiny_internvl",
        {"pixel_shuffle": 2, "patch_rows": tile_size // patch_size},
        divides=[("pixel_shuffle", "patch_rows")],
    )
    from transformers import (
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    # InternVL's processor reads its image tokens by name from the tokenizer
    tokenizer = tiny_tokenizer(
        vocabulary, "user", "assistant", image_token=None, named_tokens=IMAGE_TOKENS
    )
    side = tile_size // patch_size // 2
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessorPil(
            size={"height": tile_size, "width": tile_size},
            crop_to_patches=True,
            min_patches=1,
            max_patches=12,
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(),
        image_seq_length=side * side,
        chat_template=CHAT_TEMPLATE,
    )
    text_fields = size.language_model_fields(
        tokenizer,
        # 12 tiles and the thumbnail, twice over, and the text
        max_positions=2 * 13 * side * side + 256,
    )
    config = InternVLConfig(
        text_config={"model_type": "qwen2", **text_fields},
        vision_config={
            **size.vision_tower_fields(),
            "image_size": [tile_size, tile_size],
            "patch_size": [patch_size, patch_size],
        },
        image_token_id=processor.image_token_id,
        image_seq_length=side * side,
    )
    model = instantiate(InternVLForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)
    return model, processor
