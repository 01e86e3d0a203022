"""Offline builders of tiny open_clip models: open_clip's real classes, tiny configs.

A tiny model is an :class:`open_clip.model.CLIP` built from ``vision_cfg`` /
``text_cfg`` dicts (a ViT image tower and a causal text transformer), with a word-level
vocabulary of the shapes benchmark. Nothing is downloaded. The same config dict, saved
as ``open_clip_config.json`` beside the weights and the tokenizer files, is an
open_clip checkpoint folder that ``open_clip.create_model("local-dir:...")`` and
``open_clip.get_tokenizer("local-dir:...")`` load: that is how ``shapes-clip`` ships.

The text tower pools at the end-of-text token (``pool_type="eos"``); the tokenizer puts
``<s>`` before and ``</s>`` after each prompt and pads on the right.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dexar_core.datasets.shapes import VOCABULARY as SHAPES_VOCABULARY

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

    from dexar_core.records import LoadedModel

TOKENIZER_MARKER = "dexar-shapes-words"
"""``text_cfg.hf_tokenizer_name`` of the tiny models: makes ``open_clip.get_tokenizer``
read the tokenizer files of a ``local-dir:`` folder (it ignores the name itself)."""

PREPROCESS = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}
"""Image preprocessing of the tiny models (besides the size, the tower's image size)."""


def build_word_tokenizer(words: Iterable[str] = SHAPES_VOCABULARY) -> PreTrainedTokenizerFast:
    """A word-level tokenizer that writes ``<s> words </s>`` and pads on the right."""
    from tokenizers import processors

    from dexar_core.zoo.tokenizer import build_word_tokenizer as build_words

    tokenizer = build_words(words, image_token=None, padding_side="right")
    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        special_tokens=[(bos, tokenizer.bos_token_id), (eos, tokenizer.eos_token_id)],
    )
    return tokenizer


class WordTokenizer:
    """open_clip's tokenizer call (texts -> ``LongTensor[P, context]``) over a HF tokenizer.

    Pads and truncates exactly as ``open_clip.tokenizer.HFTokenizer`` does, for tiny
    models built in memory (``get_tokenizer`` reads a folder).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerFast, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        """Token ids ``[len(texts), context_length]``."""
        return self.tokenizer(
            [texts] if isinstance(texts, str) else list(texts),
            return_tensors="pt",
            max_length=context_length or self.context_length,
            padding="max_length",
            truncation=True,
        ).input_ids


def tiny_model_config(
    *,
    vocab_size: int,
    eos_id: int,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 32,
    layers: int = 3,
    head_width: int = 8,
    embed_dim: int = 32,
    text_width: int = 32,
    text_layers: int = 2,
    text_heads: int = 4,
    context_length: int = 16,
    pool_type: str = "tok",
    custom_attention: bool = False,
) -> dict[str, Any]:
    """open_clip's ``model_cfg`` of a tiny ViT CLIP.

    Args:
        vocab_size: the tokenizer's vocabulary size.
        eos_id: the end-of-text id the text tower pools at.
        image_size: side of the square input.
        patch_size: side of a patch; the grid is ``image_size / patch_size`` square.
        width: vision width; heads = ``width / head_width``.
        layers: vision blocks.
        head_width: vision head size.
        embed_dim: joint embedding size.
        text_width: text width.
        text_layers: text blocks.
        text_heads: text heads.
        context_length: tokens per prompt, with ``<s>`` and ``</s>``.
        pool_type: ``"tok"`` (class token) or ``"avg"`` (patch mean).
        custom_attention: build open_clip's custom block (its ``Attention`` class with
            QK normalisation) instead of ``nn.MultiheadAttention``.
    """
    vision: dict[str, Any] = {
        "image_size": image_size,
        "patch_size": patch_size,
        "width": width,
        "layers": layers,
        "head_width": head_width,
        "pool_type": pool_type,
    }
    if custom_attention:
        vision.update(block_type="custom", qk_norm=True)
    return {
        "embed_dim": embed_dim,
        "vision_cfg": vision,
        "text_cfg": {
            "context_length": context_length,
            "vocab_size": vocab_size,
            "width": text_width,
            "heads": text_heads,
            "layers": text_layers,
            "pool_type": "eos",
            "eos_id": eos_id,
            "hf_tokenizer_name": TOKENIZER_MARKER,
        },
    }


def build_model(model_cfg: Mapping[str, Any], *, seed: int = 0) -> Any:
    """An open_clip ``CLIP`` from a ``model_cfg`` dict, seeded, in eval mode, offline."""
    import torch
    from open_clip import set_model_preprocess_cfg
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**model_cfg)
    set_model_preprocess_cfg(model, {**PREPROCESS, "size": model_cfg["vision_cfg"]["image_size"]})
    return model.eval()


def build_tiny_open_clip(
    *, seed: int = 0, words: Iterable[str] = SHAPES_VOCABULARY, **config: Any
) -> tuple[Any, WordTokenizer]:
    """A randomly initialised tiny open_clip CLIP (eval mode) and its tokenizer, offline.

    Args:
        seed: torch seed of the initialisation.
        words: the vocabulary.
        **config: :func:`tiny_model_config` arguments.
    """
    tokenizer = build_word_tokenizer(words)
    model_cfg = tiny_model_config(
        vocab_size=len(tokenizer), eos_id=tokenizer.eos_token_id, **config
    )
    model = build_model(model_cfg, seed=seed)
    return model, WordTokenizer(tokenizer, model_cfg["text_cfg"]["context_length"])


def tiny_loaded(*, seed: int = 0, **config: Any) -> LoadedModel:
    """A tiny open_clip model wrapped for :func:`dexar_core.explain`."""
    from dexar_open_clip.adapter import wrap_model

    model, tokenizer = build_tiny_open_clip(seed=seed, **config)
    return wrap_model(model, tokenizer, model_id=f"tiny-open-clip(seed={seed})")


def save_checkpoint(
    folder: str | Path,
    model: Any,
    tokenizer: WordTokenizer,
    model_cfg: Mapping[str, Any],
) -> Path:
    """Write an open_clip ``local-dir`` folder: config, safetensors weights, tokenizer.

    Returns:
        The folder.
    """
    from open_clip import get_model_preprocess_cfg
    from safetensors.torch import save_file

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    preprocess = dict(get_model_preprocess_cfg(model))
    config = {"model_cfg": dict(model_cfg), "preprocess_cfg": _plain(preprocess)}
    (target / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(target / "open_clip_model.safetensors"))
    tokenizer.tokenizer.save_pretrained(target)
    return target


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
