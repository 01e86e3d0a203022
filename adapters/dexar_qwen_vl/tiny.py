"""Offline builders of tiny Qwen2-VL and Qwen2.5-VL models: real classes, tiny configs.

A tiny Qwen2-VL is a :class:`transformers.Qwen2VLForConditionalGeneration` (a ViT with
2D rotary positions and a 2x2 patch merger, a Qwen2 language model with M-RoPE) with a
few layers and a word-level vocabulary, paired with a real
:class:`transformers.Qwen2VLProcessor` (``Qwen2VLImageProcessor`` for images,
``Qwen2VLVideoProcessor`` for videos). A tiny Qwen2.5-VL is the same with
:class:`transformers.Qwen2_5_VLForConditionalGeneration`, whose vision tower runs
window attention in every block but the last, and :class:`transformers.Qwen2_5_VLProcessor`.
Both build in about a second without any download, save with ``save_pretrained`` and
load back with ``from_pretrained`` / ``AutoProcessor.from_pretrained``.

Resolution is dynamic, as in the real models: the processor resizes each image (or
video) so both sides are multiples of ``patch_size * merge_size`` and its area lies in
``[min_pixels, max_pixels]`` (``smart_resize``), keeping the aspect ratio; a
``H x W`` result gives ``(H / patch / merge) x (W / patch / merge)`` visual tokens in
the language model, row-major. The tokenizer knows the Qwen special tokens
(``<|im_start|>``, ``<|im_end|>``, ``<|vision_start|>``, ``<|image_pad|>``,
``<|video_pad|>``, ``<|vision_end|>``, ``<|endoftext|>``) and the chat template is the
Qwen2-VL one, default system message included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.datasets.shapes import VOCABULARY as SHAPES_VOCABULARY
from dexar_core.errors import InputError
from dexar_core.zoo.tiny_models import check_sizes, instantiate
from dexar_core.zoo.tokenizer import build_word_tokenizer
from dexar_qwen_vl.resolution import check_pixel_range

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"

SYSTEM_MESSAGE = "You are a helpful assistant."
"""The system message the template inserts when the conversation has none (as Qwen's)."""

CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + SYSTEM_MESSAGE + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The Qwen2-VL chat template: a default system turn, then ``<|im_start|>role ... <|im_end|>``
turns; each image or video becomes ``<|vision_start|><|image_pad|><|vision_end|>`` (or
``<|video_pad|>``), which the processor expands to one pad per visual token."""

PROMPT_WORDS: tuple[str, ...] = ("system you are a helpful assistant user picture video",)
"""Words of the template itself, always in the vocabulary."""

PROMPT_TEMPLATE = (
    f"{IM_START}system\n{SYSTEM_MESSAGE}{IM_END}\n{IM_START}user\n"
    f"{VISION_START}{IMAGE_PAD}{VISION_END}{{question}}{IM_END}\n{IM_START}assistant\n"
)
"""One image and one question, exactly as :data:`CHAT_TEMPLATE` renders them."""

DEFAULT_MIN_PIXELS = 32 * 32
DEFAULT_MAX_PIXELS = 96 * 96


def format_prompt(question: str) -> str:
    """Return the tiny Qwen-VL prompt for one image and one question.

    Args:
        question: The question or instruction, e.g. ``"what color is the circle?"``.

    Returns:
        The chat-template rendering of one user turn holding the image then the
        question, with the assistant turn opened; the answer follows, closed by
        ``<|im_end|>``.
    """
    return PROMPT_TEMPLATE.format(question=question)


def build_qwen_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with the Qwen special tokens, offline.

    ``<|endoftext|>`` pads, ``<|im_end|>`` ends a turn (the end-of-sequence token), no
    token is prepended. The vision tokens are named special tokens
    (``tokenizer.image_token``, ``video_token``, ``vision_start_token``,
    ``vision_end_token``), as the Qwen processors expect.

    Args:
        words: The vocabulary besides special tokens and punctuation.
    """
    from transformers import PreTrainedTokenizerFast

    words_only = build_word_tokenizer(
        words,
        pad_token=END_OF_TEXT,
        bos_token=END_OF_TEXT,
        eos_token=IM_END,
        image_token=None,
        add_bos=False,
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words_only.backend_tokenizer,
        pad_token=END_OF_TEXT,
        eos_token=IM_END,
        unk_token=words_only.unk_token,
        extra_special_tokens={
            "image_token": IMAGE_PAD,
            "video_token": VIDEO_PAD,
            "vision_start_token": VISION_START,
            "vision_end_token": VISION_END,
        },
        padding_side="left",
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START]})
    return tokenizer


def mrope_sections(head_dim: int) -> list[int]:
    """M-RoPE ``[temporal, height, width]`` sections summing to ``head_dim / 2``.

    The proportions of the released models (16, 24, 24 for a head of 128).
    """
    half = head_dim // 2
    spatial = half * 3 // 8
    return [half - 2 * spatial, spatial, spatial]


def build_tiny_qwen2_vl(**options: Any) -> tuple[Any, Any]:
    """Build a randomly initialised tiny Qwen2-VL and its processor, offline.

    Takes the keyword arguments of :func:`build_tiny_qwen_vl` except ``version``.

    Returns:
        ``(model, processor)``: a ``Qwen2VLForConditionalGeneration`` in eval mode and a
        ``Qwen2VLProcessor``.
    """
    return build_tiny_qwen_vl(version="2", **options)


def build_tiny_qwen2_5_vl(**options: Any) -> tuple[Any, Any]:
    """Build a randomly initialised tiny Qwen2.5-VL and its processor, offline.

    Takes the keyword arguments of :func:`build_tiny_qwen_vl` except ``version``.

    Returns:
        ``(model, processor)``: a ``Qwen2_5_VLForConditionalGeneration`` in eval mode
        (window attention in every vision block but the last) and a ``Qwen2_5_VLProcessor``.
    """
    return build_tiny_qwen_vl(version="2.5", **options)


def build_tiny_qwen_vl(
    *,
    version: str = "2",
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    patch_size: int = 8,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    text_layers: int = 2,
    vision_layers: int = 2,
    hidden_size: int = 128,
    vision_hidden_size: int = 64,
    heads: int = 4,
    kv_heads: int | None = 2,
    rope_theta: float = 10000.0,
    attn_implementation: str = "sdpa",
) -> tuple[Any, Any]:
    """Build a randomly initialised tiny Qwen2-VL (``"2"``) or Qwen2.5-VL (``"2.5"``).

    Args:
        version: ``"2"`` for Qwen2-VL, ``"2.5"`` for Qwen2.5-VL, ``"3"`` for Qwen3-VL.
        seed: Seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: Words the tokenizer knows (besides special tokens and punctuation);
            defaults to the shapes benchmark's vocabulary. The template's words are
            always added.
        patch_size: Side of a vision patch in pixels.
        merge_size: The patch merger's side: ``merge_size ** 2`` patches make one
            language-model token.
        temporal_patch_size: Video frames per temporal patch (an image is repeated to fill it).
        min_pixels: Smallest area, in pixels, an image is resized to.
        max_pixels: Largest area, in pixels, an image is resized to.
        text_layers: Number of language-model decoder layers.
        vision_layers: Number of vision blocks.
        hidden_size: Width of the language model (and of the merger's output).
        vision_hidden_size: Width of the vision tower.
        heads: Attention heads per layer (vision and text).
        kv_heads: Key/value heads of the language model (grouped-query attention);
            ``None`` for one per attention head.
        rope_theta: Base of the language model's M-RoPE frequencies.
        attn_implementation: ``"sdpa"`` or ``"eager"`` (any name transformers accepts).

    Returns:
        ``(model, processor)`` in eval mode.

    Raises:
        InputError: If a size is not a positive integer, a width is not divisible by
            ``heads``, or the pixel range cannot be met.
    """
    import transformers

    if version not in ("2", "2.5", "3"):
        raise InputError(
            f"build_tiny_qwen_vl: expected version '2', '2.5' or '3', found {version!r}."
        )
    _check_sizes(
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=temporal_patch_size,
        text_layers=text_layers,
        vision_layers=vision_layers,
        hidden_size=hidden_size,
        vision_hidden_size=vision_hidden_size,
        heads=heads,
        kv_heads=heads if kv_heads is None else kv_heads,
    )
    factor = patch_size * merge_size
    check_pixel_range(min_pixels, max_pixels, factor, who="build_tiny_qwen_vl")

    words = [*PROMPT_WORDS, *(SHAPES_VOCABULARY if vocabulary is None else vocabulary)]
    tokenizer = build_qwen_tokenizer(words)
    token_id = tokenizer.convert_tokens_to_ids

    rope: dict[str, Any] = {
        "rope_type": "default",
        "mrope_section": mrope_sections(hidden_size // heads),
        "rope_theta": float(rope_theta),
    }
    text_options = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": text_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads if kv_heads is None else kv_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": rope,
        "pad_token_id": token_id(END_OF_TEXT),
        "bos_token_id": None,
        "eos_token_id": token_id(IM_END),
    }
    vision_options: dict[str, Any] = {
        "depth": vision_layers,
        "num_heads": heads,
        "patch_size": patch_size,
        "spatial_merge_size": merge_size,
        "temporal_patch_size": temporal_patch_size,
    }
    video_processor_name = "Qwen2VLVideoProcessor"
    if version == "2":
        vision_options.update(embed_dim=vision_hidden_size, hidden_size=hidden_size, mlp_ratio=2)
        names = ("Qwen2VLVisionConfig", "Qwen2VLTextConfig", "Qwen2VLConfig")
        model_name, processor_name = "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"
    elif version == "3":
        # DeepStack: one vision block in each third feeds a language-model layer, as the
        # published [5, 11, 17] of 24 blocks feed layers 0, 1 and 2
        deepstack = sorted({max(0, vision_layers * (k + 1) // 3 - 1) for k in range(3)})
        vision_options.update(
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            out_hidden_size=hidden_size,
            deepstack_visual_indexes=deepstack,
            num_position_embeddings=64,
        )
        text_options["head_dim"] = hidden_size // heads
        rope["mrope_interleaved"] = True
        names = ("Qwen3VLVisionConfig", "Qwen3VLTextConfig", "Qwen3VLConfig")
        model_name, processor_name = "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor"
        video_processor_name = "Qwen3VLVideoProcessor"
    else:
        vision_options.update(
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            out_hidden_size=hidden_size,
            # windows of 2x2 merged tokens; the last block attends over the whole image
            window_size=2 * factor,
            fullatt_block_indexes=[vision_layers - 1],
            tokens_per_second=2,
        )
        names = ("Qwen2_5_VLVisionConfig", "Qwen2_5_VLTextConfig", "Qwen2_5_VLConfig")
        model_name, processor_name = "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"
    vision_cls, text_cls, config_cls = (getattr(transformers, name) for name in names)
    config = config_cls(
        vision_config=vision_cls(**vision_options).to_dict(),
        text_config=text_cls(**text_options).to_dict(),
        image_token_id=token_id(IMAGE_PAD),
        video_token_id=token_id(VIDEO_PAD),
        vision_start_token_id=token_id(VISION_START),
        vision_end_token_id=token_id(VISION_END),
        tie_word_embeddings=False,
    )
    config._attn_implementation = attn_implementation

    model = instantiate(getattr(transformers, model_name), config, seed=seed)
    model.generation_config.pad_token_id = token_id(END_OF_TEXT)
    model.generation_config.bos_token_id = None
    model.generation_config.eos_token_id = [token_id(IM_END), token_id(END_OF_TEXT)]

    sizes: dict[str, Any] = {
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "patch_size": patch_size,
        "merge_size": merge_size,
        "temporal_patch_size": temporal_patch_size,
    }
    processor = getattr(transformers, processor_name)(
        image_processor=transformers.Qwen2VLImageProcessor(**sizes),
        video_processor=getattr(transformers, video_processor_name)(
            **sizes,
            # Qwen3-VL's video processor reads the pixel range from size only
            size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
            cap_pixels_per_frame=False,
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def build_shapes_qwen2_vl(
    *, seed: int = 0, image_size: int | tuple[int, int] = 64, **options: Any
) -> tuple[Any, Any]:
    """The tiny Qwen2-VL the embedded ``shapes-qwen2vl`` checkpoint is trained from.

    Patches of 8 pixels merged 2x2: a 64x64 image gives a 4x4 token grid, 96x96 a 6x6
    one, 80x112 a 5x7 one; the pixel range admits the benchmark's square and non-square
    training sizes at their own size. Each patch sees most of a shape, so the vision
    tower can tell shapes apart from one patch (patches of 4 pixels learnt shapes far
    more slowly). M-RoPE uses base 10 rather than Qwen's 1e6: in M-RoPE the width
    section gets the lowest frequencies, which at base 1e6 (or 1e4) barely turn over a
    grid a few tokens wide, leaving a tiny model unable to tell left from right.

    Args:
        seed: Seed of the weight initialisation.
        image_size: The benchmark's image side, or ``(height, width)``: sets the pixel
            range to half and four times its area.
        **options: Overrides of :func:`build_tiny_qwen_vl`'s keyword arguments.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    area = height * width
    settings: dict[str, Any] = {
        "patch_size": 8,
        "min_pixels": area // 2,
        "max_pixels": area * 4,
        "rope_theta": 10.0,
        "text_layers": 2,
        "vision_layers": 2,
        "hidden_size": 128,
        "vision_hidden_size": 64,
        "heads": 4,
        "kv_heads": 2,
    }
    settings.update(options)
    return build_tiny_qwen_vl(version="2", seed=seed, **settings)


def _check_sizes(**sizes: int) -> None:
    """Reject tiny-model sizes transformers would fail on later with a vaguer error."""
    divides = [("heads", "hidden_size"), ("heads", "vision_hidden_size"), ("kv_heads", "heads")]
    check_sizes("build_tiny_qwen_vl", sizes, divides=divides)
    head_dim = sizes["hidden_size"] // sizes["heads"]
    if head_dim % 8:
        raise InputError(
            f"build_tiny_qwen_vl: expected the text head size hidden_size / heads to be a "
            f"multiple of 8 (for the three M-RoPE sections), found {head_dim}."
        )
