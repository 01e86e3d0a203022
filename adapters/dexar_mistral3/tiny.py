"""Offline builder of tiny Mistral 3 models, shaped like Mistral Small 3.1.

A tiny Mistral 3 is a :class:`transformers.Mistral3ForConditionalGeneration` (Pixtral
tower with 2-D RoPE, the 2x2 patch merger, a Mistral decoder) with a real
:class:`transformers.PixtralProcessor`. Kept from ``mistralai/Mistral-Small-3.1-24B-
Instruct-2503``: patch 14, ``spatial_merge_size`` 2, the ``[IMG]`` / ``[IMG_BREAK]`` /
``[IMG_END]`` layout and the ``[INST]`` turn; depth, width and ``longest_edge`` are
scaled down. The mirror in tests/mirrors/fixtures follows the published files closely.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dexar_core.datasets.shapes import VOCABULARY as SHAPES_VOCABULARY
from dexar_core.zoo.tiny_models import check_sizes, instantiate
from dexar_core.zoo.tokenizer import build_word_tokenizer, with_special_tokens

if TYPE_CHECKING:
    from transformers import Mistral3ForConditionalGeneration, PixtralProcessor

PATCH_SIZE = 14
MERGE = 2
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST]' }}{% for block in message['content'] %}"
    "{% if block['type'] == 'image' %}{{ '[IMG]' }}{% else %}{{ block['text'] }}{% endif %}"
    "{% endfor %}{{ '[/INST]' }}{% else %}{{ message['content'][0]['text'] + eos_token }}"
    "{% endif %}{% endfor %}"
)
"""The published turn format without its default system message."""


def build_tiny_mistral3(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    longest_edge: int = 112,
    hidden_size: int = 32,
    layers: int = 2,
) -> tuple[Mistral3ForConditionalGeneration, PixtralProcessor]:
    """Build a randomly initialised tiny Mistral 3 and its processor, offline.

    Args:
        seed: seed of the weight initialisation.
        vocabulary: words the tokenizer knows; the shapes benchmark's by default.
        longest_edge: the longest image side after the processor's resize, in pixels.
        hidden_size: width of the tower and of the decoder.
        layers: layers of each.

    Returns:
        ``(model, processor)``, the model in eval mode.

    Raises:
        InputError: a size that is not positive or does not divide as it must.
    """
    check_sizes(
        "build_tiny_mistral3",
        {"longest_edge": longest_edge, "hidden_size": hidden_size, "layers": layers, "four": 4},
        divides=[("four", "hidden_size")],
    )
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        PixtralImageProcessor,
        PixtralProcessor,
    )

    tokenizer = with_special_tokens(
        build_word_tokenizer(
            SHAPES_VOCABULARY if vocabulary is None else vocabulary, image_token="[IMG]"
        ),
        unnamed=("[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"),
    )
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": hidden_size // 2,
            "max_position_embeddings": 1024,
            "sliding_window": None,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "head_dim": hidden_size // 2,
            "image_size": longest_edge,
            "patch_size": PATCH_SIZE,
        },
        image_token_index=tokenizer.image_token_id,
        spatial_merge_size=MERGE,
    )
    model = instantiate(Mistral3ForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)
    image_processor = PixtralImageProcessor(
        size={"longest_edge": longest_edge}, patch_size={"height": PATCH_SIZE, "width": PATCH_SIZE}
    )
    processor = PixtralProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE,
        chat_template=CHAT_TEMPLATE,
        image_token="[IMG]",
    )
    return model, processor
