"""Offline builder of tiny LLaVA-OneVision models, shaped like ``llava-onevision-qwen2-7b-ov-hf``.

A tiny LLaVA-OneVision is a :class:`transformers.LlavaOnevisionForConditionalGeneration`
(SigLIP tower read whole with the ``"full"`` selection, GELU projector, the learned
``image_newline``, a Qwen2 decoder) with a real :class:`transformers.LlavaOnevisionProcessor`.
Kept from the published checkpoint: patch 14 and a SigLIP tower without CLS, the
pinpoints as tile multiples up to 6 x 6, ``anyres_max_9`` and the Qwen2 chat turn; depth,
width and the tile side are scaled down (a tile side that is no multiple of 14, as the
published 384 px is not, so the grids' pixel boxes are tested as published).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.zoo.tiny_models import TWO_HEADS, check_sizes, instantiate, tiny_tokenizer
from dexar_core.zoo.tokenizer import IMAGE_TOKEN, with_special_tokens

if TYPE_CHECKING:
    from transformers import LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor

PATCH_SIZE = 14
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% for item in message['content'] if item['type'] == 'image' %}{{ '<image>' }}{% endfor %}"
    "{% for item in message['content'] if item['type'] == 'text' %}{{ '\\n' + item['text'] }}"
    "{% endfor %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""The published Qwen2 turn: images first, then the text on a new line."""


SIZES = TWO_HEADS.evolve(arguments=("tile_size", "hidden_size", "layers"), image_size=60)
"""The tiny LLaVA-OneVision's sizes: 60 px tiles (no multiple of 14, as 384 is not)."""


def build_tiny_llava_onevision(
    *, seed: int = 0, vocabulary: Iterable[str] | None = None, max_tiles: int = 9, **sizes: Any
) -> tuple[LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor]:
    """Build a randomly initialised tiny LLaVA-OneVision and its processor, offline.

    Args:
        seed: seed of the weight initialisation.
        vocabulary: words the tokenizer knows; the shapes benchmark's by default.
        max_tiles: N of ``anyres_max_N``: grids of more tiles' worth are shrunk.
        **sizes: over :data:`SIZES`: ``tile_size`` (a tile's and the base image's side
            in pixels, at least 14), ``hidden_size`` (the tower's and the decoder's
            width) and ``layers`` (of each).

    Returns:
        ``(model, processor)``: a ``LlavaOnevisionForConditionalGeneration`` in eval
        mode and its ``LlavaOnevisionProcessor``.

    Raises:
        InputError: a size that is not positive or does not divide as it must.
    """
    size = SIZES.given("build_tiny_llava_onevision", sizes, max_tiles=max_tiles)
    tile_size, side = size.image_size, size.image_size // PATCH_SIZE
    check_sizes("build_tiny_llava_onevision", {"side": side})
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = with_special_tokens(
        tiny_tokenizer(vocabulary, image_token=IMAGE_TOKEN),
        {"video_token": "<video>"},
        ("<|im_start|>", "<|im_end|>"),
    )
    pinpoints = [
        [rows * tile_size, cols * tile_size] for rows in range(1, 7) for cols in range(1, 7)
    ]
    text_fields = size.language_model_fields(tokenizer, max_positions=4096)
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            **size.vision_tower_fields(),
            "vision_use_head": False,
        },
        text_config={"model_type": "qwen2", **text_fields, "tie_word_embeddings": False},
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio=f"anyres_max_{max_tiles}",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    model = instantiate(
        LlavaOnevisionForConditionalGeneration, config, seed=seed, tokenizer=tokenizer
    )
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": tile_size, "width": tile_size},
        image_grid_pinpoints=pinpoints,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        # the processor needs one; dexar refuses videos for this family
        video_processor=LlavaOnevisionVideoProcessor(
            size={"height": tile_size, "width": tile_size}
        ),
        num_image_tokens=side * side,
        vision_feature_select_strategy="full",
        vision_aspect_ratio=f"anyres_max_{max_tiles}",
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
