"""Offline builders of tiny PaliGemma models: the real transformers classes, tiny configs.

A tiny PaliGemma is a :class:`transformers.PaliGemmaForConditionalGeneration` (SigLIP
vision tower, linear projector, Gemma or Gemma 2 decoder with its head tied to the
embeddings) with a word-level vocabulary, paired with a real
:class:`transformers.PaliGemmaProcessor`. It builds in about a second without any
download and round-trips through ``save_pretrained`` / ``from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.zoo.tiny_models import TinySizes, instantiate, special_token_fields, tiny_tokenizer

if TYPE_CHECKING:
    from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

PROMPT_WORDS: tuple[str, ...] = ("answer", "caption", "en")
"""PaliGemma's task-prefix words, always in the vocabulary."""


SIZES = TinySizes(
    arguments=("image_size", "patch_size", "text_layers", "hidden_size", "heads", "kv_heads"),
    image_size=32,
    patch_size=8,
    hidden_size=64,
    # PaliGemma uses multi-query attention
    kv_heads=1,
    vision_layers=1,
)
"""The tiny PaliGemma's sizes: 32 px images of 4 x 4 patches, width 64, one SigLIP layer."""


def build_tiny_paligemma(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    gemma2: bool = False,
    sliding_window: int | None = None,
    attn_implementation: str = "sdpa",
    **sizes: Any,
) -> tuple[PaliGemmaForConditionalGeneration, PaliGemmaProcessor]:
    """Build a randomly initialised tiny PaliGemma and its processor, offline.

    Args:
        seed: seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: words the tokenizer knows besides special tokens and punctuation
            (the shapes benchmark's words by default).
        gemma2: a PaliGemma 2 decoder (Gemma 2: attention and final-logit soft-capping,
            alternating sliding-window layers) instead of Gemma.
        sliding_window: keys a Gemma 2 sliding-window layer sees; by default longer
            than any tiny prompt and answer, because dexar's naive reference gradients
            do not mask the keys a window hides (see docs/adapters.md).
        attn_implementation: ``"sdpa"`` or ``"eager"``; a Gemma 2 decoder always runs
            ``"eager"`` (transformers gives it no SDPA path: SDPA cannot soft-cap).
        **sizes: over :data:`SIZES` (``dexar_core.zoo.tiny_models.TinySizes``):
            ``image_size`` (the square the image processor resizes to), ``patch_size``
            (a SigLIP patch's side; divides ``image_size``), ``text_layers`` (Gemma
            decoder layers), ``hidden_size`` (the tower's and the decoder's width),
            ``heads`` and ``kv_heads`` (the decoder's key/value heads).

    Returns:
        ``(model, processor)``: the model in eval mode and a processor writing
        ``(image_size // patch_size) ** 2`` image tokens per image.

    Raises:
        InputError: a size that is not a positive integer or does not divide as it must.
    """
    size = SIZES.given("build_tiny_paligemma", sizes)
    from transformers import (
        Gemma2Config,
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    # The processor writes <bos> itself, after the image tokens.
    tokenizer = tiny_tokenizer(vocabulary, *PROMPT_WORDS, add_bos=False)
    image_tokens = (size.image_size // size.patch_size) ** 2
    text_options = size.language_model_fields(
        tokenizer,
        max_positions=image_tokens + 128,
        head_dim=size.hidden_size // size.heads,
        **special_token_fields(tokenizer),
    )
    if gemma2:
        text_config: Any = Gemma2Config(
            **text_options,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
            sliding_window=image_tokens + 128 if sliding_window is None else sliding_window,
        )
    else:
        text_config = GemmaConfig(**text_options)
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**size.vision_tower_fields()),
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        vocab_size=len(tokenizer),
        projection_dim=size.hidden_size,
        hidden_size=size.hidden_size,
    )
    config._attn_implementation = "eager" if gemma2 else attn_implementation

    model = instantiate(PaliGemmaForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)

    # PaliGemmaProcessor reads how many image tokens to write from the image processor.
    image_processor = SiglipImageProcessor(
        do_resize=True,
        size={"height": size.image_size, "width": size.image_size},
        image_seq_length=image_tokens,
    )
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return model, processor
