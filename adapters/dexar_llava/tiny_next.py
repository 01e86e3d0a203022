"""Offline builder of tiny LLaVA-NeXT models, mirroring ``llava-hf/llava-v1.6-mistral-7b-hf``.

A tiny LLaVA-NeXT is a :class:`transformers.LlavaNextForConditionalGeneration` (CLIP
vision tower, GELU projector, the learned ``image_newline`` row end, a Mistral language
model) with a real :class:`transformers.LlavaNextProcessor`. What the published
checkpoint states about its image tokens is kept: patch 14, the second-to-last vision
layer, the ``"default"`` feature selection (CLS dropped), one CLS feature counted by the
processor, the ``[INST] ... [/INST]`` prompt, and the any-resolution pinpoints in units of
the tile side (1x2, 2x1, 2x2, 3x1 and 1x3 tiles). Only depth, width and the tile side
(336 pixels there, ``tile_size`` here) are scaled down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.errors import InputError
from dexar_core.zoo.tiny_models import SQUARE_64, decoder_config, instantiate, tiny_tokenizer
from dexar_core.zoo.tokenizer import IMAGE_TOKEN
from dexar_llava.tiny import clip_tower_config, llava_processor

if TYPE_CHECKING:
    from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

PATCH_SIZE = 14
"""The published vision tower's patch side."""

TILE_PINPOINTS: tuple[tuple[int, int], ...] = ((1, 2), (2, 1), (2, 2), (3, 1), (1, 3))
"""The published ``image_grid_pinpoints`` (336x672, ... 336x1008) in tiles of 336 pixels."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% for item in message['content'] if item['type'] == 'text' %}"
    "{{ ' ' + item['text'] }}{% endfor %}{{ '</s>' }}"
    "{% endif %}{% endfor %}"
)
"""The published Mistral-instruct form: ``[INST] <image>\\n{prompt} [/INST]``."""

PROMPT_WORDS: tuple[str, ...] = ("inst",)
"""Words of the prompt format (``[INST]`` splits into ``[``, ``inst``, ``]``)."""


SIZES = SQUARE_64.evolve(
    arguments=("tile_size", "text_layers", "vision_layers", "hidden_size", "heads", "kv_heads"),
    image_size=56,
    patch_size=PATCH_SIZE,
    hidden_size=64,
    kv_heads=2,
)
"""The tiny LLaVA-NeXT's sizes: 56 px tiles, width 64, two layers, the published 4:1 heads."""


def build_tiny_llava_next(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    vision_feature_select_strategy: str = "default",
    **sizes: Any,
) -> tuple[LlavaNextForConditionalGeneration, LlavaNextProcessor]:
    """Build a randomly initialised tiny LLaVA-NeXT and its processor, offline.

    Args:
        seed: Seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: Words the tokenizer knows; defaults to the shapes benchmark's.
        vision_feature_select_strategy: the config's and processor's strategy; only
            ``"default"`` is what the published model and dexar use (others exist to test
            the refusal).
        **sizes: Over :data:`SIZES`: ``tile_size`` (one any-resolution tile's and the base
            image's side, a multiple of the patch side 14; 336 in the published model),
            ``text_layers`` (Mistral), ``vision_layers`` (CLIP, at least 2: the published
            ``vision_feature_layer`` is -2), ``hidden_size`` (both widths), ``heads`` and
            ``kv_heads`` (the Mistral's key/value heads; the published ratio is 4).

    Returns:
        ``(model, processor)``: a ``LlavaNextForConditionalGeneration`` in eval mode and
        its ``LlavaNextProcessor``.

    Raises:
        InputError: If ``tile_size`` is not a positive multiple of 14, fewer than two
            vision layers are asked for, or the heads do not divide the width.
    """
    size = SIZES.given("build_tiny_llava_next", sizes)
    if size.vision_layers < 2:
        raise InputError(
            f"build_tiny_llava_next: expected at least 2 vision layers (the features come "
            f"from the second-to-last), found {size.vision_layers}."
        )

    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
        MistralConfig,
    )

    tokenizer = tiny_tokenizer(vocabulary, *PROMPT_WORDS, image_token=IMAGE_TOKEN)
    tile_size = size.image_size
    pinpoints = [[rows * tile_size, cols * tile_size] for rows, cols in TILE_PINPOINTS]
    side = tile_size // PATCH_SIZE
    # The longest prompt: the base image, a 3x1 or 1x3 tile grid with its row ends, text.
    longest_image = side * side + 3 * side * (side + 1)

    text_config = decoder_config(
        MistralConfig,
        size,
        tokenizer,
        max_positions=2 * longest_image + 192,
        rms_norm_eps=1e-5,
        rope_theta=1000000.0,
        sliding_window=None,
    )
    config = LlavaNextConfig(
        vision_config=clip_tower_config(size),
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy=vision_feature_select_strategy,
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
        use_image_newline_parameter=True,
        tie_word_embeddings=False,
    )
    model = instantiate(LlavaNextForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)

    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": tile_size},
        crop_size={"height": tile_size, "width": tile_size},
        image_grid_pinpoints=pinpoints,
        do_center_crop=True,
        do_pad=True,
    )
    processor = llava_processor(
        LlavaNextProcessor,
        image_processor,
        tokenizer,
        patch_size=PATCH_SIZE,
        strategy=vision_feature_select_strategy,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
