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

from dexar_core.zoo.tiny_models import (
    SQUARE_64,
    decoder_config,
    instantiate,
    square_resize,
    tiny_tokenizer,
)
from dexar_core.zoo.tokenizer import IMAGE_TOKEN

if TYPE_CHECKING:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from dexar_core.zoo.tiny_models import TinySizes

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


SIZES = SQUARE_64
"""The tiny LLaVA's sizes: CLIP and Llama of width 128, two layers each, 64 px images."""


def build_tiny_llava(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    attn_implementation: str = "sdpa",
    **sizes: Any,
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Build a randomly initialised tiny LLaVA and its processor, offline.

    Args:
        seed: Seed of the weight initialisation; the same seed gives the same weights.
        vocabulary: Words the tokenizer knows (besides special tokens and punctuation);
            defaults to the shapes benchmark's vocabulary. The prompt words ``user`` and
            ``assistant`` are always added.
        attn_implementation: ``"sdpa"`` or ``"eager"`` (any name transformers accepts).
        **sizes: Over :data:`SIZES`: ``image_size`` (the square input's side after
            resizing), ``patch_size`` (divides it), ``text_layers`` (Llama),
            ``vision_layers`` (CLIP), ``hidden_size`` (both widths), ``heads`` (both) and
            ``kv_heads`` (the Llama's key/value heads; ``None`` for one per head).

    Returns:
        ``(model, processor)``: a ``LlavaForConditionalGeneration`` in eval mode and a
        ``LlavaProcessor`` whose ``<image>`` expands to ``(image_size // patch_size) ** 2``
        tokens.

    Raises:
        InputError: If the sizes are not positive, ``patch_size`` does not divide
            ``image_size``, or ``heads`` / ``kv_heads`` do not divide the widths.
    """
    size = SIZES.given("build_tiny_llava", sizes)
    from transformers import LlamaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = tiny_tokenizer(vocabulary, *PROMPT_WORDS, image_token=IMAGE_TOKEN)
    image_tokens = (size.image_size // size.patch_size) ** 2
    # The prompt is the image tokens plus a short question; the longest answer is a
    # three-object caption.
    text_config = decoder_config(LlamaConfig, size, tokenizer, max_positions=image_tokens + 192)
    # The last vision layer's output; the default (-2) would leave the last layer of a
    # tiny tower unused.
    config = llava_config(clip_tower_config(size), text_config, tokenizer, feature_layer=-1)
    config._attn_implementation = attn_implementation

    model = instantiate(LlavaForConditionalGeneration, config, seed=seed, tokenizer=tokenizer)
    processor = llava_processor(
        LlavaProcessor,
        clip_image_processor(size.image_size),
        tokenizer,
        patch_size=size.patch_size,
        strategy="default",
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def clip_tower_config(sizes: TinySizes) -> CLIPVisionConfig:
    """A CLIP vision tower of these sizes, as the LLaVA families use (any tile side)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**sizes.vision_tower_fields(), projection_dim=sizes.hidden_size)


def clip_image_processor(side: int) -> CLIPImageProcessor:
    """The CLIP image processor resizing straight to ``side x side`` (no centre crop)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(**square_resize(side))


def llava_config(
    vision_config: Any, text_config: Any, tokenizer: Any, *, feature_layer: int
) -> LlavaConfig:
    """The config of a LLaVA-1.5 of these towers: CLS dropped, a GELU projector.

    Args:
        vision_config: the CLIP tower's config.
        text_config: the language model's config.
        tokenizer: the word-level tokenizer, whose image and pad ids it takes.
        feature_layer: the vision layer whose output the projector reads.
    """
    from transformers import LlavaConfig

    grid = vision_config.image_size // vision_config.patch_size
    return LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.image_token_id,
        image_seq_length=grid * grid,
        vision_feature_select_strategy="default",
        vision_feature_layer=feature_layer,
        projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
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
