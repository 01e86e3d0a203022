"""Offline builder of tiny Idefics3 models, for the conformance kit and the tests.

A tiny Idefics3 is a :class:`transformers.Idefics3ForConditionalGeneration` (SigLIP-style
vision tower, pixel-shuffle connector, a Llama language model) with a real
:class:`transformers.Idefics3Processor`. What the published ``HuggingFaceM4/Idefics3-8B-Llama3``
states about its image tokens is kept: tiles of one vision-tower image, the longest edge
resized to four tiles, pixel shuffle by 2, the ``User:<image>...<end_of_utterance>\\nAssistant:``
prompt. Only depth, width and the tile side (364 pixels there) are scaled down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dexar_core.datasets.shapes import VOCABULARY as SHAPES_VOCABULARY
from dexar_core.zoo.tiny_models import check_sizes, instantiate
from dexar_core.zoo.tokenizer import build_word_tokenizer

if TYPE_CHECKING:
    from transformers import Idefics3ForConditionalGeneration, Idefics3Processor

CHAT_TEMPLATE = (
    "<s>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
"""The published Idefics3 chat form (its ``<|begin_of_text|>`` is the tiny ``<s>``)."""

VIEW_MARKERS = ("<global-img>", *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))
"""The text markers before each view, one token each as in SmolVLM's vocabulary."""


def build_tiny_idefics3(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    tile_size: int = 32,
    patch_size: int = 8,
    scale_factor: int = 2,
    text_layers: int = 2,
    hidden_size: int = 64,
    heads: int = 4,
) -> tuple[Idefics3ForConditionalGeneration, Idefics3Processor]:
    """Build a randomly initialised tiny Idefics3 and its processor, offline.

    Args:
        seed: Seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: Words the tokenizer knows; defaults to the shapes benchmark's.
        tile_size: Side of one tile and of the global view, in pixels.
        patch_size: The vision tower's patch side; ``tile_size / patch_size`` must be a
            multiple of ``scale_factor``.
        scale_factor: The pixel-shuffle factor (2 in the published model).
        text_layers: Number of Llama decoder layers.
        hidden_size: Width of both the vision tower and the language model.
        heads: Attention heads per layer (the language model's key/value heads are half).

    Returns:
        ``(model, processor)``: an ``Idefics3ForConditionalGeneration`` in eval mode and
        its ``Idefics3Processor``.

    Raises:
        InputError: a size is not a positive integer or does not divide as it must.
    """
    check_sizes(
        "build_tiny_idefics3",
        {
            "tile_size": tile_size,
            "patch_size": patch_size,
            "scale_factor": scale_factor,
            "patch_rows": tile_size // patch_size,
            "text_layers": text_layers,
            "hidden_size": hidden_size,
            "heads": heads,
        },
        divides=[
            ("patch_size", "tile_size"),
            ("scale_factor", "patch_rows"),
            ("heads", "hidden_size"),
        ],
    )
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3 import Idefics3ImageProcessorPil

    words = ["user", "assistant", *(SHAPES_VOCABULARY if vocabulary is None else vocabulary)]
    tokenizer = build_word_tokenizer(words)
    tokenizer.add_tokens(list(VIEW_MARKERS), special_tokens=True)
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 4 * tile_size}, max_image_size={"longest_edge": tile_size}
    )
    side = tile_size // patch_size // scale_factor
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=side * side,
        chat_template=CHAT_TEMPLATE,
    )
    width = {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size}
    config = Idefics3Config(
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "num_hidden_layers": text_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // 2),
            # 4x4 tiles plus the global view, twice over, and the text
            "max_position_embeddings": 2 * 17 * side * side + 256,
            "pad_token_id": tokenizer.pad_token_id,
            **width,
        },
        vision_config={
            "num_hidden_layers": 1,
            "num_attention_heads": heads,
            "image_size": tile_size,
            "patch_size": patch_size,
            **width,
        },
        scale_factor=scale_factor,
        image_token_id=processor.image_token_id,
    )
    model = instantiate(Idefics3ForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)
    return model, processor
