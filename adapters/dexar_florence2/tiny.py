"""Offline builders of tiny Florence-2 models: the real transformers classes, tiny configs.

A tiny Florence-2 is a :class:`transformers.Florence2ForConditionalGeneration` (a DaViT
vision tower of two convolutional stages, the multimodal projector, a BART encoder and
decoder) with a word-level vocabulary, paired with a real
:class:`transformers.Florence2Processor`. It builds in well under a second without any
download, saves with ``save_pretrained`` and loads back with ``from_pretrained`` /
``AutoProcessor.from_pretrained``: exactly the code path of a hub checkpoint.

The DaViT stages stride 8 in all (by default two stages, 4 then 2), so a ``64 x 64`` image
gives an ``8 x 8`` grid; the
projector prepends the global pooled token, and the processor writes
``1 + 64`` image tokens, then ``<s>``, the prompt (task tokens expanded) and ``</s>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.errors import InputError
from dexar_core.zoo.tiny_models import (
    SQUARE_64,
    instantiate,
    special_token_fields,
    square_resize,
    tiny_tokenizer,
)
from dexar_core.zoo.tokenizer import IMAGE_TOKEN

if TYPE_CHECKING:
    from transformers import Florence2ForConditionalGeneration, Florence2Processor

TASK_WORDS: tuple[str, ...] = (
    "what does the image describe",
    "describe in detail what is shown in the image",
    "describe with a paragraph what is shown in the image",
)
"""Words of the caption task prompts the processor expands, always in the vocabulary."""

DAVIT_STAGES: dict[int, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    1: ((8,), (8,), (0,)),
    2: ((7, 3), (4, 2), (3, 1)),
}
"""Kernels, strides and paddings of the DaViT's strided convolutions, by stage count:
one stage of patch 8, or two stages striding 4 then 2 (total stride 8 either way)."""


def format_prompt(question: str) -> str:
    """Return the tiny Florence-2 prompt for one question: the question itself.

    Florence-2 has no chat template: the processor adds the image tokens, ``<s>`` and
    ``</s>``, and expands task tokens such as ``<CAPTION>``.
    """
    return question


# the DaViT stages stride 8 in all: the patch side of SQUARE_64
SIZES = SQUARE_64.evolve(
    arguments=("image_size", "text_layers", "hidden_size", "heads"),
    divides=(("heads", "hidden_size"),),
)
"""The tiny Florence-2's sizes: 64 px images (an 8 x 8 grid), a BART of width 128."""


def build_tiny_florence2(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    vision_dims: tuple[int, ...] = (32, 64),
    attn_implementation: str = "sdpa",
    **sizes: Any,
) -> tuple[Florence2ForConditionalGeneration, Florence2Processor]:
    """Build a randomly initialised tiny Florence-2 and its processor, offline.

    Args:
        seed: Seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: Words the tokenizer knows (besides special tokens and punctuation);
            defaults to the shapes benchmark's vocabulary. The caption task prompts'
            words are always added.
        vision_dims: Channels of each DaViT stage: one stage (patch 8) or two (stride 4,
            then 2).
        attn_implementation: ``"sdpa"`` or ``"eager"`` (any name transformers accepts).
        **sizes: Over :data:`SIZES`: ``image_size`` (the square input's side, a multiple
            of 8), ``text_layers`` (BART encoder layers, and as many decoder layers),
            ``hidden_size`` (the BART's width and the projector's output) and ``heads``
            (the BART's).

    Returns:
        ``(model, processor)``: a ``Florence2ForConditionalGeneration`` in eval mode and a
        ``Florence2Processor`` writing ``1 + (image_size // 8) ** 2`` image tokens.

    Raises:
        InputError: If a size is not positive, ``image_size`` is not a multiple of 8, or
            ``heads`` does not divide ``hidden_size``.
    """
    if len(vision_dims) not in DAVIT_STAGES:
        raise InputError(
            f"build_tiny_florence2: expected one or two DaViT stage widths, found {vision_dims!r}."
        )
    stages = {f"vision_dims[{i}]": dim for i, dim in enumerate(vision_dims)}
    size = SIZES.given("build_tiny_florence2", sizes, **stages)
    image_size, hidden_size, heads = size.image_size, size.hidden_size, size.heads
    text_layers, ffn_dim = size.text_layers, size.intermediate_size
    if image_size % 8:
        raise InputError(
            f"build_tiny_florence2: expected image_size to be a multiple of 8 (the DaViT "
            f"stages stride 4 then 2), found {image_size}; choose e.g. 64."
        )

    from transformers import (
        BartConfig,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
    )

    tokenizer = tiny_tokenizer(vocabulary, *TASK_WORDS, image_token=IMAGE_TOKEN)
    grid = image_size // 8
    image_tokens = grid * grid + 1

    kernels, strides, paddings = DAVIT_STAGES[len(vision_dims)]
    vision_config = Florence2VisionConfig(
        depths=[1] * len(vision_dims),
        patch_size=list(kernels),
        patch_stride=list(strides),
        patch_padding=list(paddings),
        patch_prenorm=[False, True][: len(vision_dims)],
        embed_dim=list(vision_dims),
        num_heads=[max(1, dim // 16) for dim in vision_dims],
        num_groups=[max(1, dim // 16) for dim in vision_dims],
        window_size=4,
        drop_path_rate=0.0,
        projection_dim=hidden_size,
        max_position_embeddings=max(grid, 8),
        max_temporal_embeddings=4,
    )
    text_config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=hidden_size,
        encoder_layers=text_layers,
        decoder_layers=text_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim,
        # The encoder reads the image tokens and a short prompt; the decoder's longest
        # answer is a three-object caption.
        max_position_embeddings=image_tokens + 64,
        dropout=0.0,
        attention_dropout=0.0,
        **special_token_fields(tokenizer),
        # BART (and Florence-2) decoders start from </s>
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=None,
    )
    config = Florence2Config(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=tokenizer.image_token_id,
    )
    config._attn_implementation = attn_implementation

    model = instantiate(Florence2ForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)
    model.generation_config.decoder_start_token_id = tokenizer.eos_token_id

    image_processor = CLIPImageProcessor(**square_resize(image_size), image_seq_length=image_tokens)
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer)
    return model, processor


def build_shapes_florence2(
    *, seed: int = 0, image_size: int = 64
) -> tuple[Florence2ForConditionalGeneration, Florence2Processor]:
    """The architecture of the embedded ``shapes-florence2`` checkpoint, untrained.

    A one-stage DaViT (patch 8, 64 channels) and a two-layer BART of width 64: small
    enough to train on a shared CPU (the two-stage tower and width 128 cost about three
    times as much per step).
    """
    return build_tiny_florence2(seed=seed, image_size=image_size, hidden_size=64, vision_dims=(64,))
