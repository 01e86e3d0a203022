"""Offline builder of tiny Gemma 3 models, shaped like ``google/gemma-3-4b-it``.

A tiny Gemma 3 is a :class:`transformers.Gemma3ForConditionalGeneration` (SigLIP tower,
average-pooling projector, Gemma 3 decoder with sliding-window and global layers) with
a real :class:`transformers.Gemma3Processor`. Kept from the published checkpoint: patch
14, the pooled square grid of soft tokens, the ``<start_of_image>`` / ``<end_of_image>``
markers, the ``<start_of_turn>`` prompt form and both layer kinds; depth, width and the
image side are scaled down. The mirror in tests/mirrors/fixtures/gemma-3-4b-it.json
follows the published files more closely (ids, vocabulary size, weight layout).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.zoo.tiny_models import (
    TWO_HEADS,
    check_sizes,
    instantiate,
    special_token_fields,
    tiny_tokenizer,
)
from dexar_core.zoo.tokenizer import with_special_tokens

if TYPE_CHECKING:
    from transformers import Gemma3ForConditionalGeneration, Gemma3Processor

PATCH_SIZE = 14
MARKERS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}
"""The extra special tokens the Gemma 3 processor reads from its tokenizer."""

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) }}"
    "{{ '\\n' }}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}"
    "{{ '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
"""The published template's form for one user turn (system prompts left out)."""


def _spread_projection(model: Gemma3ForConditionalGeneration) -> None:
    """transformers starts the image projection at zero, which makes every image feature
    zero; a trained model's is spread."""
    model.model.multi_modal_projector.mm_input_projection_weight.normal_(mean=0.0, std=0.02)


SIZES = TWO_HEADS.evolve(divides=(("patch_size", "image_size"), ("heads", "hidden_size")))
"""The tiny Gemma 3's sizes: 112 px images (8x8 patches), width 32, two layers of each."""


def build_tiny_gemma3(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    tokens_per_side: int = 4,
    sliding_window: int = 512,
    **sizes: Any,
) -> tuple[Gemma3ForConditionalGeneration, Gemma3Processor]:
    """Build a randomly initialised tiny Gemma 3 and its processor, offline.

    Args:
        seed: seed of the weight initialisation.
        vocabulary: words the tokenizer knows; the shapes benchmark's by default.
        tokens_per_side: side of the pooled soft-token grid (divides ``image_size / 14``).
        sliding_window: the sliding-window layers' window.
        **sizes: over :data:`SIZES`: ``image_size`` (the square the image processor
            resizes to, a multiple of 14), ``hidden_size`` (the tower's and the
            decoder's width) and ``layers`` (of each; sliding-window and global decoder
            layers alternate).

    Returns:
        ``(model, processor)``: a ``Gemma3ForConditionalGeneration`` in eval mode and its
        ``Gemma3Processor``.

    Raises:
        InputError: a size that is not positive or does not divide as it must.
    """
    size = SIZES.given("build_tiny_gemma3", sizes, sliding_window=sliding_window)
    check_sizes(
        "build_tiny_gemma3",
        {"patches_per_side": size.image_size // PATCH_SIZE, "tokens_per_side": tokens_per_side},
        divides=[("tokens_per_side", "patches_per_side")],
    )
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    tokenizer = with_special_tokens(
        tiny_tokenizer(vocabulary, "model", bos_token="<bos>", eos_token="<eos>", image_token=None),
        MARKERS,
        ("<start_of_turn>", "<end_of_turn>"),
    )
    ids = {name: getattr(tokenizer, f"{name}_id") for name in MARKERS}
    head_dim = size.hidden_size // 2
    config = Gemma3Config(
        text_config={
            **size.language_model_fields(tokenizer, max_positions=1024),
            "head_dim": head_dim,
            "query_pre_attn_scalar": head_dim,
            "sliding_window": sliding_window,
            "sliding_window_pattern": 2,
            **special_token_fields(tokenizer),
        },
        vision_config={**size.vision_tower_fields(), "vision_use_head": False},
        mm_tokens_per_image=tokens_per_side**2,
        boi_token_index=ids["boi_token"],
        eoi_token_index=ids["eoi_token"],
        image_token_index=ids["image_token"],
    )
    model = instantiate(
        Gemma3ForConditionalGeneration,
        config,
        seed=seed,
        tokenizer=tokenizer,
        initialise=_spread_projection,
    )
    image_processor = Gemma3ImageProcessor(
        size={"height": size.image_size, "width": size.image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=tokens_per_side**2,
    )
    return model, processor
