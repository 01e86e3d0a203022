"""Offline builder of tiny Llama 3.2 Vision models, mirroring ``Llama-3.2-11B-Vision-Instruct``.

A tiny mllama is a :class:`transformers.MllamaForConditionalGeneration` (a tiled ViT with
a local and a gated global encoder, a Llama 3 language model whose every fifth layer,
from the fourth on, is a gated cross-attention layer) with a real
:class:`transformers.MllamaProcessor`. What the published checkpoint states about its
image keys is kept: patch 14, a CLS feature per tile, up to 4 tiles in the published
aspect ratios, the cross-attention layers at 3, 8, ... and the intermediate vision
layers concatenated into the features. Only depth, width and the tile side (560 pixels
there, ``tile_size`` here) are scaled down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dexar_core.zoo.tiny_models import TILE_SIZES, instantiate, special_token_fields, tiny_tokenizer

IMAGE_TOKEN = "<|image|>"
BEGIN, END_OF_TURN = "<|begin_of_text|>", "<|eot_id|>"
START_HEADER, END_HEADER = "<|start_header_id|>", "<|end_header_id|>"

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
"""The published Llama 3.2 Vision Instruct turns, for a conversation with images (the
published template adds its dated system turn only to conversations without one)."""

SUPPORTED_ASPECT_RATIOS = [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]
"""The published tile layouts (rows, columns) of at most 4 tiles."""


def open_cross_attention_gates(model: Any) -> None:
    """Give the cross-attention gates a spread, as training would.

    transformers initialises every ``cross_attn_attn_gate`` and ``cross_attn_mlp_gate``
    to zero: ``tanh(0)`` shuts the image out of an untrained model entirely.
    """
    import torch

    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                parameter.normal_(mean=0.0, std=1.0)


SIZES = TILE_SIZES.evolve(
    arguments=("tile_size", "text_layers", "vision_layers", "hidden_size", "heads"),
    image_size=56,
    patch_size=14,
    text_layers=10,
    vision_layers=2,
)
"""The tiny mllama's sizes: 56 px tiles, ten decoder layers (two cross-attend), width 64."""


def build_tiny_mllama(
    *,
    seed: int = 0,
    vocabulary: Iterable[str] | None = None,
    attn_implementation: str = "sdpa",
    **sizes: Any,
) -> tuple[Any, Any]:
    """Build a randomly initialised tiny mllama and its processor, offline.

    Args:
        seed: seed of the weight initialisation.
        vocabulary: words the tokenizer knows; defaults to the shapes benchmark's.
        attn_implementation: ``"sdpa"`` or ``"eager"``.
        **sizes: over :data:`SIZES`: ``tile_size`` (a tile's side in pixels, a multiple
            of the patch, 14), ``text_layers`` (layers 3, 8, 13, ... below it
            cross-attend), ``vision_layers`` (of the local encoder; the global one has
            one), ``hidden_size`` and ``heads`` (of the language model; key/value heads:
            half).

    Returns:
        ``(model, processor)``, the model in eval mode.
    """
    import transformers

    size = SIZES.given("build_tiny_mllama", sizes)
    tokenizer = tiny_tokenizer(
        vocabulary,
        "user assistant",
        bos_token=BEGIN,
        eos_token=END_OF_TURN,
        image_token=IMAGE_TOKEN,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [START_HEADER, END_HEADER]})
    text_fields = size.language_model_fields(
        tokenizer,
        max_positions=1024,
        cross_attention_layers=list(range(3, size.text_layers, 5)),
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )
    vision_width = 32
    config = transformers.MllamaConfig(
        text_config={**text_fields, **special_token_fields(tokenizer)},
        vision_config={
            "image_size": size.image_size,
            "patch_size": 14,
            "hidden_size": vision_width,
            "intermediate_size": 2 * vision_width,
            "num_hidden_layers": size.vision_layers,
            "num_global_layers": 1,
            "attention_heads": 2,
            "intermediate_layers_indices": [0],
            "vision_output_dim": 2 * vision_width,
            "max_num_tiles": 4,
            "supported_aspect_ratios": SUPPORTED_ASPECT_RATIOS,
        },
        image_token_index=tokenizer.image_token_id,
    )
    config._attn_implementation = attn_implementation
    model = instantiate(
        transformers.MllamaForConditionalGeneration,
        config,
        seed=seed,
        tokenizer=tokenizer,
        initialise=open_cross_attention_gates,
    )
    processor = transformers.MllamaProcessor(
        image_processor=transformers.MllamaImageProcessorPil(
            size={"height": size.image_size, "width": size.image_size}, max_image_tiles=4
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor
