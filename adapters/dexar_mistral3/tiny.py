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
from typing import TYPE_CHECKING, Any

from dexar_core.zoo.tiny_models import TWO_HEADS, instantiate, tiny_tokenizer
from dexar_core.zoo.tokenizer import with_special_tokens

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


SIZES = TWO_HEADS.evolve(
    arguments=("longest_edge", "hidden_size", "layers"),
    # two heads of an even size: the 2-D RoPE splits each head in halves
    divides=(("four", "hidden_size"),),
)
"""The tiny Mistral 3's sizes: images up to 112 px, width 32, two layers of each."""


def build_tiny_mistral3(
    *, seed: int = 0, vocabulary: Iterable[str] | None = None, **sizes: Any
) -> tuple[Mistral3ForConditionalGeneration, PixtralProcessor]:
    """Build a randomly initialised tiny Mistral 3 and its processor, offline.

    Args:
        seed: seed of the weight initialisation.
        vocabulary: words the tokenizer knows; the shapes benchmark's by default.
        **sizes: over :data:`SIZES`: ``longest_edge`` (the longest image side after the
            processor's resize, in pixels), ``hidden_size`` (the Pixtral tower's and the
            decoder's width) and ``layers`` (of each).

    Returns:
        ``(model, processor)``: a ``Mistral3ForConditionalGeneration`` in eval mode and
        its ``PixtralProcessor``.

    Raises:
        InputError: a size that is not positive or does not divide as it must.
    """
    size = SIZES.given("build_tiny_mistral3", sizes, four=4)
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        PixtralImageProcessor,
        PixtralProcessor,
    )

    tokenizer = with_special_tokens(
        tiny_tokenizer(vocabulary, image_token="[IMG]"),
        unnamed=("[IMG_BREAK]", "[IMG_END]", "[INST]", "[/INST]"),
    )
    head_dim = size.hidden_size // 2
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            **size.language_model_fields(tokenizer, max_positions=1024),
            "head_dim": head_dim,
            "sliding_window": None,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**size.vision_tower_fields(), "head_dim": head_dim},
        image_token_index=tokenizer.image_token_id,
        spatial_merge_size=MERGE,
    )
    model = instantiate(Mistral3ForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)
    image_processor = PixtralImageProcessor(
        size={"longest_edge": size.image_size},
        patch_size={"height": PATCH_SIZE, "width": PATCH_SIZE},
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
