"""A tiny MyVLM of the real transformers class, built offline from a config."""

from __future__ import annotations

from typing import Any


def build_tiny_myvlm(*, seed: int = 0) -> tuple[Any, Any]:
    """``(model, processor)``: a random tiny model in eval mode and its real processor.

    Build the configs with a few layers and a small width, a word-level tokenizer
    (``dexar_core.zoo.tiny_models.tiny_tokenizer``) and the model's own processor
    class: give the builder's default sizes as one ``dexar_core.zoo.tiny_models.TinySizes``
    value (``SIZES.given(...)`` checks the caller's), feed its ``vision_tower_fields()``
    and ``language_model_fields(...)`` to the config classes and build the model with
    ``dexar_core.zoo.tiny_models.instantiate`` (seeded weights). See
    ``dexar_paligemma/tiny.py`` for a finished one. ``dexar_plugin.toml`` names this
    builder for the conformance case.
    """
    raise NotImplementedError("build_tiny_myvlm: build the tiny model of your architecture")
