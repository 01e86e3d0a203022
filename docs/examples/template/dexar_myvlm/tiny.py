"""A tiny MyVLM of the real transformers class, built offline from a config."""

from __future__ import annotations

from typing import Any


def build_tiny_myvlm(*, seed: int = 0) -> tuple[Any, Any]:
    """``(model, processor)``: a random tiny model in eval mode and its real processor.

    Build the configs with a few layers and a small width, a word-level tokenizer
    (``dexar_core.zoo.tokenizer.build_word_tokenizer``) and the model's own processor
    class; check the sizes with ``dexar_core.zoo.tiny_models.check_sizes`` and build the
    model with ``dexar_core.zoo.tiny_models.instantiate`` (seeded weights). See
    ``dexar_paligemma/tiny.py`` for a finished one.
    """
    raise NotImplementedError("build_tiny_myvlm: build the tiny model of your architecture")


def tiny_case() -> Any:
    """The conformance case: the tiny model, a non-square image, a prompt and an answer."""
    import numpy as np
    from PIL import Image

    from dexar_core.records import LoadedModel
    from dexar_myvlm.adapter import MyVlmAdapter
    from dexar_plugins.testing.conformance import ConformanceCase

    model, processor = build_tiny_myvlm(seed=0)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    return ConformanceCase(
        loaded=LoadedModel(
            model=model, processor=processor, adapter=MyVlmAdapter(), model_id="tiny"
        ),
        images=Image.fromarray(pixels),
        prompt="what color is the circle?",
        answer="a red circle",
    )
