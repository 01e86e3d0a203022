"""Offline builders of tiny BLIP-2 models: the real transformers classes, tiny configs.

A tiny BLIP-2 is a :class:`transformers.Blip2ForConditionalGeneration` (a BLIP-2 ViT
vision tower, a Q-Former with learned query tokens, a language projection and either an
OPT decoder or a T5 encoder-decoder) with a word-level vocabulary, paired with a real
:class:`transformers.Blip2Processor`. It builds in well under a second without any
download and round-trips through ``save_pretrained`` / ``from_pretrained``.

Two facts of transformers 5 shape the builder:

- ``Blip2Processor`` needs the image token as an ``AddedToken`` (a plain string in the
  tokenizer's special tokens breaks it): the tokenizer is built without one and the
  processor adds ``<image>`` itself.
- ``Blip2PreTrainedModel._init_weights`` zero-initialises the query tokens, so every
  query starts identical and training cannot tell them apart: they are re-drawn from
  ``normal(0, 0.02)`` here (the released models were initialised that way too).
- ``Blip2VisionConfig`` initialises the vision tower with std ``1e-10`` (its weights are
  meant to be loaded), which makes a fresh tower's output independent of the pixels:
  the tiny vision config uses ``0.02``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.errors import InputError
from dexar_core.zoo.tiny_models import SQUARE_64, instantiate, special_token_fields, tiny_tokenizer
from dexar_core.zoo.tokenizer import IMAGE_TOKEN

if TYPE_CHECKING:
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

PROMPT_TEMPLATE = "Question: {question} Answer:"
"""The prompt every tiny and embedded BLIP-2 is trained and queried with."""

PROMPT_WORDS: tuple[str, ...] = ("question", "answer")
"""Words of the prompt format itself, always in the vocabulary."""

LANGUAGE_MODELS = ("opt", "t5")
"""The language-model families a tiny BLIP-2 can have."""

POSITION_INITS = ("normal", "sincos")
"""How the vision tower's learned position embeddings start (see :func:`build_tiny_blip2`)."""


def format_prompt(question: str) -> str:
    """Return the tiny BLIP-2 prompt for one question: ``"Question: {question} Answer:"``."""
    return PROMPT_TEMPLATE.format(question=question)


SIZES = SQUARE_64.evolve(
    arguments=("image_size", "patch_size", "text_layers", "vision_layers", "hidden_size", "heads")
)
"""The tiny BLIP-2's sizes: width 128 everywhere, two layers of each part, 64 px images."""


def build_tiny_blip2(
    *,
    seed: int = 0,
    language_model: str = "opt",
    vocabulary: Iterable[str] | None = None,
    num_query_tokens: int = 32,
    qformer_layers: int = 2,
    attn_implementation: str = "sdpa",
    position_init: str = "normal",
    **sizes: Any,
) -> tuple[Blip2ForConditionalGeneration, Blip2Processor]:
    """Build a randomly initialised tiny BLIP-2 and its processor, offline.

    Args:
        seed: Seed of the weight initialisation; the same seed gives the same weights.
        language_model: ``"opt"`` (decoder-only) or ``"t5"`` (encoder-decoder, Flan-T5's
            gated-GELU feed-forward).
        vocabulary: Words the tokenizer knows (besides special tokens and punctuation);
            defaults to the shapes benchmark's vocabulary. ``question`` and ``answer``
            are always added.
        num_query_tokens: Learned query tokens of the Q-Former (32 in released models).
        qformer_layers: Q-Former layers, each with cross-attention to the patches.
        attn_implementation: ``"sdpa"`` or ``"eager"`` (any name transformers accepts).
        position_init: ``"normal"`` (transformers' truncated normal, std 0.02) or
            ``"sincos"``: the patches' learned position embeddings start from the 2D
            sine-cosine table of :func:`sincos_positions` (the class token's at zero).
            They stay learned parameters; only their starting point differs.
        **sizes: Over :data:`SIZES`: ``image_size`` (the square input's side),
            ``patch_size`` (divides it), ``text_layers`` (language-model layers; T5:
            encoder and decoder each), ``vision_layers``, ``hidden_size`` (the width of
            the vision tower, the Q-Former and the language model) and ``heads``
            (everywhere).

    Returns:
        ``(model, processor)``: a ``Blip2ForConditionalGeneration`` in eval mode and a
        ``Blip2Processor`` writing ``num_query_tokens`` image tokens before the prompt.

    Raises:
        InputError: For an unknown language model or position initialisation, sizes that
            are not positive, a patch size that does not divide the image size, or heads
            that do not divide the width.
    """
    if position_init not in POSITION_INITS:
        raise InputError(
            f"build_tiny_blip2: expected position_init to be one of {POSITION_INITS}, "
            f"found {position_init!r}."
        )
    if language_model not in LANGUAGE_MODELS:
        raise InputError(
            f"build_tiny_blip2: expected language_model to be one of {LANGUAGE_MODELS}, "
            f"found {language_model!r}."
        )
    size = SIZES.given(
        "build_tiny_blip2", sizes, num_query_tokens=num_query_tokens, qformer_layers=qformer_layers
    )
    hidden_size, heads, text_layers = size.hidden_size, size.heads, size.text_layers

    from tokenizers import AddedToken
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        OPTConfig,
        PreTrainedConfig,
        T5Config,
    )

    tokenizer = tiny_tokenizer(
        vocabulary,
        *PROMPT_WORDS,
        image_token=None,
        add_bos=language_model == "opt",
        padding_side="left",
    )
    tokenizer.add_tokens(
        [AddedToken(IMAGE_TOKEN, normalized=False, special=True)], special_tokens=True
    )
    image_token_id = tokenizer.get_vocab()[IMAGE_TOKEN]

    vision_config = Blip2VisionConfig(
        **size.vision_tower_fields(),
        # the default (1e-10, for loading pretrained towers) leaves a fresh tower blind
        initializer_range=0.02,
    )
    qformer_config = Blip2QFormerConfig(
        vocab_size=len(tokenizer),
        **size.layer_fields(qformer_layers),
        encoder_hidden_size=hidden_size,
        cross_attention_frequency=1,
        max_position_embeddings=64,
    )
    text_config: PreTrainedConfig
    if language_model == "opt":
        text_config = OPTConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            word_embed_proj_dim=hidden_size,
            num_hidden_layers=text_layers,
            num_attention_heads=heads,
            ffn_dim=size.intermediate_size,
            # the query tokens, a short question and a three-object caption
            max_position_embeddings=num_query_tokens + 96,
            dropout=0.0,
            attention_dropout=0.0,
            **special_token_fields(tokenizer),
            tie_word_embeddings=False,
        )
    else:
        t5_options: dict[str, Any] = {
            # T5 decoders start from <pad>; the head is not tied in Flan-T5
            "decoder_start_token_id": tokenizer.pad_token_id,
            "tie_word_embeddings": False,
        }
        text_config = T5Config(
            vocab_size=len(tokenizer),
            d_model=hidden_size,
            d_kv=hidden_size // heads,
            d_ff=size.intermediate_size,
            num_layers=text_layers,
            num_decoder_layers=text_layers,
            num_heads=heads,
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **t5_options,
        )
    config = Blip2Config(
        vision_config=vision_config.to_dict(),
        qformer_config=qformer_config.to_dict(),
        text_config=text_config.to_dict(),
        num_query_tokens=num_query_tokens,
        image_token_index=image_token_id,
    )
    config._attn_implementation = attn_implementation

    def initialise(model: Blip2ForConditionalGeneration) -> None:
        # BLIP-2's query tokens start at zero (all queries alike): give them a spread, as
        # training would.
        model.query_tokens.normal_(std=qformer_config.initializer_range)
        if position_init == "sincos":
            table = model.vision_model.embeddings.position_embedding
            grid = size.image_size // size.patch_size
            table[0, 0] = 0.0
            table[0, 1:] = sincos_positions(grid, hidden_size)

    model = instantiate(Blip2ForConditionalGeneration, config, seed=seed, initialise=initialise)
    for generation_config in (model.generation_config, model.language_model.generation_config):
        generation_config.pad_token_id = tokenizer.pad_token_id
        generation_config.bos_token_id = tokenizer.bos_token_id
        generation_config.eos_token_id = tokenizer.eos_token_id
        if language_model == "t5":
            generation_config.decoder_start_token_id = tokenizer.pad_token_id

    side = size.image_size
    image_processor = BlipImageProcessor(do_resize=True, size={"height": side, "width": side})
    processor = Blip2Processor(
        image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=num_query_tokens
    )
    return model, processor


def sincos_positions(grid: int, width: int) -> Any:
    """The 2D sine-cosine position table of a ``grid x grid`` patch grid, row-major.

    Half of the ``width`` channels encode the patch's row and half its column, each as
    sines and cosines at ``width / 4`` frequencies ``10000^(-i / (width / 4))`` (the
    fixed table of MAE and MoCo v3 ViTs); every entry lies in ``[-1, 1]``.

    Args:
        grid: patches per side.
        width: the embedding width, a multiple of 4.

    Returns:
        A ``(grid * grid, width)`` float tensor.

    Raises:
        InputError: if ``width`` is not a multiple of 4.
    """
    import torch

    if width % 4:
        raise InputError(f"sincos_positions: expected a width divisible by 4, found {width}.")
    quarter = width // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")

    def encode(coordinate: Any) -> Any:
        angles = coordinate.flatten()[:, None].float() * frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(columns)], dim=1)


def build_shapes_blip2(
    *, seed: int = 0, image_size: int = 64
) -> tuple[Blip2ForConditionalGeneration, Blip2Processor]:
    """The architecture of the embedded ``shapes-blip2`` checkpoint (OPT), untrained.

    Width 64 everywhere and the released models' 32 query tokens: small enough to train
    on a shared CPU (width 128 costs about four times as much per step). The vision
    tower's position embeddings start from the sine-cosine table: the Q-Former reads
    the patches as a set, so where an object is reaches the language model only through
    what the position embeddings add to each patch, and from transformers' std-0.02
    start they never grew enough to carry it (see the model card).
    """
    return build_tiny_blip2(
        seed=seed, image_size=image_size, hidden_size=64, position_init="sincos"
    )
