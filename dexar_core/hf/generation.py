"""The free run's decoding: greedy by default, the checkpoint's own settings on request.

A published checkpoint's ``generation_config.json`` often asks for more than the argmax:
Florence-2 for a 3-beam search with ``no_repeat_ngram_size``, Qwen2.5-VL for sampling with
a repetition penalty. dexar explains the answer the model gives, and by default that
answer is the greedy one (one beam, no sampling, no penalty), which is reproducible and
what the method describes. ``generation="checkpoint"`` keeps the checkpoint's settings;
the explained answer is then the one they produce, whatever it is.
"""

from __future__ import annotations

from typing import Any

from dexar_core.errors import InputError

GENERATION_MODES = ("greedy", "checkpoint")

TOKEN_FIELDS = (
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "decoder_start_token_id",
    "forced_bos_token_id",
    "forced_eos_token_id",
)
"""What a greedy run keeps from the checkpoint's config: which tokens start, end and pad
an answer (BART-style decoders put a forced BOS after the start token)."""

DECODING_FIELDS = ("num_beams", "do_sample", "repetition_penalty", "no_repeat_ngram_size")
"""The settings recorded with a generated answer, to tell how it was decoded."""


def check_generation(mode: str) -> str:
    """``mode`` when it is a known generation mode, else an error listing them."""
    if mode not in GENERATION_MODES:
        raise InputError(
            f"generation must be one of {GENERATION_MODES}, got {mode!r}: 'greedy' (the "
            "default) decodes the argmax, 'checkpoint' uses the checkpoint's generation config."
        )
    return mode


def greedy_config(checkpoint_config: Any) -> Any:
    """A ``GenerationConfig`` that decodes the argmax, with the checkpoint's special tokens."""
    from transformers import GenerationConfig

    tokens = {
        field: getattr(checkpoint_config, field)
        for field in TOKEN_FIELDS
        if getattr(checkpoint_config, field, None) is not None
    }
    return GenerationConfig(num_beams=1, do_sample=False, **tokens)


def apply_generation(model: Any, mode: str) -> None:
    """Set the decoding of ``model``'s free runs (and of its generating sub-models).

    BLIP-2's ``generate`` hands over to its language model's, which reads its own
    config: every sub-module that generates gets the greedy config.
    """
    if check_generation(mode) == "checkpoint":
        return
    from transformers import GenerationMixin

    for module in model.modules():
        config = getattr(module, "generation_config", None)
        if isinstance(module, GenerationMixin) and config is not None:
            module.generation_config = greedy_config(config)


def decoding_facts(model: Any) -> dict[str, Any]:
    """How ``model``'s free runs decode: beams, sampling, penalties (for the metadata)."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return {}
    return {field: getattr(config, field, None) for field in DECODING_FIELDS}
