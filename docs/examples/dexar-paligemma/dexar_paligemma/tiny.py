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

from dexar_core.datasets.shapes import VOCABULARY as SHAPES_VOCABULARY
from dexar_core.zoo.tiny_models import instantiate
from dexar_core.zoo.tokenizer import build_word_tokenizer

if TYPE_CHECKING:
    from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

PROMPT_WORDS: tuple[str, ...] = ("answer", "caption", "en")
"""PaliGemma's task-prefix words, always in the vocabulary."""


def build_tiny_paligemma(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    text_layers: int = 2,
    hidden_size: int = 64,
    heads: int = 4,
    kv_heads: int = 1,
    gemma2: bool = False,
    sliding_window: int | None = None,
    attn_implementation: str = "sdpa",
) -> tuple[PaliGemmaForConditionalGeneration, PaliGemmaProcessor]:
    """Build a randomly initialised tiny PaliGemma and its processor, offline.

    Args:
        seed: seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: words the tokenizer knows besides special tokens and punctuation
            (the shapes benchmark's words by default).
        image_size: side of the square the image processor resizes to.
        patch_size: side of a SigLIP patch; must divide ``image_size``.
        text_layers: Gemma decoder layers.
        hidden_size: width of the vision tower and the decoder.
        heads: attention heads per layer.
        kv_heads: key/value heads of the decoder (PaliGemma uses multi-query attention).
        gemma2: a PaliGemma 2 decoder (Gemma 2: attention and final-logit soft-capping,
            alternating sliding-window layers) instead of Gemma.
        sliding_window: keys a Gemma 2 sliding-window layer sees; by default longer
            than any tiny prompt and answer, because dexar's naive reference gradients
            do not mask the keys a window hides (see docs/adapters.md).
        attn_implementation: ``"sdpa"`` or ``"eager"``; a Gemma 2 decoder always runs
            ``"eager"`` (transformers gives it no SDPA path: SDPA cannot soft-cap).

    Returns:
        ``(model, processor)``: the model in eval mode and a processor writing
        ``(image_size // patch_size) ** 2`` image tokens per image.
    """
    from transformers import (
        Gemma2Config,
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    if image_size % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide image_size {image_size}.")
    words = [*PROMPT_WORDS, *(SHAPES_VOCABULARY if vocabulary is None else vocabulary)]
    # The processor writes <bos> itself, after the image tokens.
    tokenizer = build_word_tokenizer(words, add_bos=False)
    image_tokens = (image_size // patch_size) ** 2

    vision_config = SiglipVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    text_options: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": text_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden_size // heads,
        "max_position_embeddings": image_tokens + 128,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
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
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        vocab_size=len(tokenizer),
        projection_dim=hidden_size,
        hidden_size=hidden_size,
    )
    config._attn_implementation = "eager" if gemma2 else attn_implementation

    model = instantiate(PaliGemmaForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)

    # PaliGemmaProcessor reads how many image tokens to write from the image processor.
    image_processor = SiglipImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        image_seq_length=image_tokens,
    )
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return model, processor
