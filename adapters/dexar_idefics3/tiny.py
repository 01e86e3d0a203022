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
from typing import TYPE_CHECKING, Any

from dexar_core.zoo.tiny_models import TILE_SIZES, check_sizes, instantiate, tiny_tokenizer

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


SIZES = TILE_SIZES
"""The tiny Idefics3's sizes: 32 px tiles of 4x4 patches, width 64, a one-layer tower."""


def build_tiny_idefics3(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    scale_factor: int = 2,
    **sizes: Any,
) -> tuple[Idefics3ForConditionalGeneration, Idefics3Processor]:
    """Build a randomly initialised tiny Idefics3 and its processor, offline.

    Args:
        seed: Seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: Words the tokenizer knows; defaults to the shapes benchmark's.
        scale_factor: The pixel-shuffle factor (2 in the published model).
        **sizes: Over :data:`SIZES`: ``tile_size`` (one tile's and the global view's
            side, in pixels), ``patch_size`` (the tower's; ``tile_size / patch_size``
            must be a multiple of ``scale_factor``), ``text_layers`` (Llama),
            ``hidden_size`` (both widths) and ``heads`` (the language model's key/value
            heads are half).

    Returns:
        ``(model, processor)``: an ``Idefics3ForConditionalGeneration`` in eval mode and
        its ``Idefics3Processor``.

    Raises:
        InputError: a size is not a positive integer or does not divide as it must.
    """
    size = SIZES.given("build_tiny_idefics3", sizes)
    patch_rows = size.image_size // size.patch_size
    check_sizes(
        "build_tiny_idefics3",
        {"scale_factor": scale_factor, "patch_rows": patch_rows},
        divides=[("scale_factor", "patch_rows")],
    )
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3 import Idefics3ImageProcessorPil

    tokenizer = tiny_tokenizer(vocabulary, "user", "assistant")
    tokenizer.add_tokens(list(VIEW_MARKERS), special_tokens=True)
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 4 * size.image_size},
        max_image_size={"longest_edge": size.image_size},
    )
    side = patch_rows // scale_factor
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=side * side,
        chat_template=CHAT_TEMPLATE,
    )
    text_fields = size.language_model_fields(
        tokenizer,
        # 4x4 tiles plus the global view, twice over, and the text
        max_positions=2 * 17 * side * side + 256,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = Idefics3Config(
        text_config={"model_type": "llama", **text_fields},
        vision_config=size.vision_tower_fields(),
        scale_factor=scale_factor,
        image_token_id=processor.image_token_id,
    )
    model = instantiate(Idefics3ForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)
    return model, processor
