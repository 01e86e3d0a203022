"""Offline builders of tiny LLaVA models: the real transformers classes, tiny configs.

A tiny LLaVA is a :class:`transformers.LlavaForConditionalGeneration` (CLIP vision
tower, two-layer GELU projector, Llama language model) with a few layers and a
word-level vocabulary, paired with a real :class:`transformers.LlavaProcessor`. It
builds in well under a second without any download, saves with ``save_pretrained`` and
loads back with ``from_pretrained`` / ``AutoProcessor.from_pretrained``: exactly the
code path of a hub checkpoint.

The image processor resizes straight to ``image_size x image_size`` (no centre crop),
so the ``(image_size / patch_size) ** 2`` visual tokens cover the whole image, row by
row from the top left. The processor expands each ``<image>`` in the prompt to that
many image tokens (the vision tower's CLS feature is dropped by the ``"default"``
feature-selection strategy).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dexar_core.datasets.shapes import VOCABULARY as SHAPES_VOCABULARY
from dexar_core.zoo.tiny_models import check_sizes, instantiate
from dexar_core.zoo.tokenizer import IMAGE_TOKEN, build_word_tokenizer

if TYPE_CHECKING:
    from transformers import CLIPVisionConfig, LlavaForConditionalGeneration, LlavaProcessor

PROMPT_TEMPLATE = "USER: <image>\n{question} ASSISTANT:"
"""The prompt every tiny and embedded LLaVA is trained and queried with."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{% if not loop.first %}{{ ' ' }}{% endif %}{{ 'USER:' }}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ ' <image>\\n' }}"
    "{% elif item['type'] == 'text' %}{{ (' ' if loop.first else '') + item['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{% elif message['role'] == 'assistant' %}{{ ' ASSISTANT: ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] if item['type'] == 'text' %}"
    "{{ item['text'] }}{% endfor %}{% endif %}{{ '</s>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}"
)
"""Chat template rendering ``[user(image, text)]`` as :data:`PROMPT_TEMPLATE`."""

PROMPT_WORDS: tuple[str, ...] = ("user", "assistant")
"""Words of the prompt format itself, always in the vocabulary."""


def format_prompt(question: str) -> str:
    """Return the tiny LLaVA prompt for one image and one question.

    Args:
        question: The question or instruction, e.g. ``"what color is the circle?"``.

    Returns:
        ``"USER: <image>\\n{question} ASSISTANT:"``; the answer follows after a space.
    """
    return PROMPT_TEMPLATE.format(question=question)


def build_tiny_llava(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    image_size: int = 64,
    patch_size: int = 8,
    text_layers: int = 2,
    vision_layers: int = 2,
    hidden_size: int = 128,
    heads: int = 4,
    kv_heads: int | None = None,
    attn_implementation: str = "sdpa",
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Build a randomly initialised tiny LLaVA and its processor, offline.

    Args:
        seed: Seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: Words the tokenizer knows (besides special tokens and punctuation);
            defaults to the shapes benchmark's vocabulary. The prompt words ``user`` and
            ``assistant`` are always added.
        image_size: Side of the square input image in pixels, after resizing.
        patch_size: Side of a vision patch; must divide ``image_size``.
        text_layers: Number of Llama decoder layers.
        vision_layers: Number of CLIP encoder layers.
        hidden_size: Width of both the vision tower and the language model.
        heads: Attention heads per layer (vision and text).
        kv_heads: Key/value heads of the language model (grouped-query attention);
            ``None`` for one per attention head.
        attn_implementation: ``"sdpa"`` or ``"eager"`` (any name transformers accepts).

    Returns:
        ``(model, processor)``: a ``LlavaForConditionalGeneration`` in eval mode and a
        ``LlavaProcessor`` whose ``<image>`` expands to ``(image_size // patch_size) ** 2``
        tokens.

    Raises:
        InputError: If the sizes are not positive, ``patch_size`` does not divide
            ``image_size``, or ``heads`` / ``kv_heads`` do not divide the widths.
    """
    kv = heads if kv_heads is None else kv_heads
    check_sizes(
        "build_tiny_llava",
        {
            "image_size": image_size,
            "patch_size": patch_size,
            "hidden_size": hidden_size,
            "heads": heads,
            "kv_heads": kv,
        },
        divides=[("patch_size", "image_size"), ("heads", "hidden_size"), ("kv_heads", "heads")],
    )

    from transformers import (
        CLIPImageProcessor,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    words = [*PROMPT_WORDS, *(SHAPES_VOCABULARY if vocabulary is None else vocabulary)]
    tokenizer = build_word_tokenizer(words, image_token=IMAGE_TOKEN)
    grid = image_size // patch_size
    image_tokens = grid * grid

    vision_config = clip_tower_config(
        hidden_size=hidden_size,
        layers=vision_layers,
        heads=heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    text_config = language_config(
        LlamaConfig,
        tokenizer,
        hidden_size=hidden_size,
        layers=text_layers,
        heads=heads,
        kv_heads=kv,
        # The prompt is the image tokens plus a short question; the longest answer
        # is a three-object caption.
        max_positions=image_tokens + 192,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        image_seq_length=image_tokens,
        vision_feature_select_strategy="default",
        # The last vision layer's output; the default (-2) would leave the last layer
        # of a tiny tower unused.
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = attn_implementation

    model = instantiate(LlavaForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)

    image_processor = CLIPImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        do_center_crop=False,
        crop_size={"height": image_size, "width": image_size},
    )
    processor = llava_processor(
        LlavaProcessor,
        image_processor,
        tokenizer,
        patch_size=patch_size,
        strategy="default",
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def clip_tower_config(
    *, hidden_size: int, layers: int, heads: int, image_size: int, patch_size: int
) -> CLIPVisionConfig:
    """A CLIP vision tower of the given size, as the LLaVA families use (any tile side)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        **layer_sizes(hidden_size, layers, heads),
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=hidden_size,
    )


def layer_sizes(hidden_size: int, layers: int, heads: int) -> dict[str, int]:
    """The sizes of a tiny tower or language model: its width, an MLP four times as wide."""
    return {
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
    }


def language_config(
    config_class: Any,
    tokenizer: Any,
    *,
    hidden_size: int,
    layers: int,
    heads: int,
    kv_heads: int,
    max_positions: int,
    **published: Any,
) -> Any:
    """The language model of a tiny LLaVA of either family (Llama, Mistral), untied.

    Args:
        config_class: the text config class, e.g. ``LlamaConfig`` or ``MistralConfig``.
        tokenizer: the word-level tokenizer, whose size and special ids it takes.
        hidden_size: width; the MLP is four times as wide.
        layers: decoder layers.
        heads: attention heads.
        kv_heads: key/value heads (grouped-query attention).
        max_positions: the longest sequence the model must take.
        **published: fields the published family sets (Mistral's ``rope_theta``...).
    """
    return config_class(
        **layer_sizes(hidden_size, layers, heads),
        vocab_size=len(tokenizer),
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        **published,
    )


def llava_processor(
    processor_class: Any,
    image_processor: Any,
    tokenizer: Any,
    *,
    patch_size: int,
    strategy: str,
    chat_template: str,
) -> Any:
    """A LLaVA-family processor whose ``<image>`` counts one CLS feature per image.

    Args:
        processor_class: ``LlavaProcessor`` or ``LlavaNextProcessor``.
        image_processor: its image processor.
        tokenizer: the word-level tokenizer.
        patch_size: the vision tower's patch side.
        strategy: the ``vision_feature_select_strategy`` the model's config has.
        chat_template: the prompt form the model is queried with.
    """
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
        chat_template=chat_template,
        image_token=IMAGE_TOKEN,
    )
