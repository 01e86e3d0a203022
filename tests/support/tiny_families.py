"""The in-memory tiny models of the adapter families, each built once for the whole run.

The family's own tests (tests/adapters/<family>/) and the tests parametrised over the
families (tests/adapters/test_family_*.py) ask for the same model by name and share it:
building it is most of what such a test costs. A test that changes the processor's
settings restores them (:func:`processor_settings`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from noise_images import noise_image
from PIL import Image

from dexar_core.images import Video
from dexar_core.records import LoadedModel
from dexar_gemma3.adapter import Gemma3Adapter
from dexar_gemma3.tiny import build_tiny_gemma3
from dexar_idefics3.adapter import Idefics3Adapter
from dexar_idefics3.tiny import build_tiny_idefics3
from dexar_internvl.adapter import InternVLAdapter
from dexar_internvl.tiny import build_tiny_internvl
from dexar_llava.next import LlavaNextAdapter
from dexar_llava.onevision import LlavaOnevisionAdapter
from dexar_llava.tiny_next import build_tiny_llava_next
from dexar_llava.tiny_onevision import build_tiny_llava_onevision
from dexar_mistral3.adapter import Mistral3Adapter
from dexar_mistral3.tiny import build_tiny_mistral3
from dexar_mllama.adapter import MllamaAdapter
from dexar_mllama.tiny import build_tiny_mllama
from dexar_qwen_vl.adapter import QwenVLAdapter
from dexar_qwen_vl.tiny import build_tiny_qwen_vl

#: name -> (builder, adapter class, the builder's settings besides seed 1)
TINY_MODELS: dict[str, tuple[Callable[..., Any], type, dict[str, Any]]] = {
    "llava_next": (build_tiny_llava_next, LlavaNextAdapter, {}),
    # anyres_max_4: grids past four tiles' worth of features are shrunk
    "llava_onevision": (build_tiny_llava_onevision, LlavaOnevisionAdapter, {"max_tiles": 4}),
    "mistral3": (build_tiny_mistral3, Mistral3Adapter, {}),
    # a window of 8 keys, far shorter than any prompt of the tests: the sliding layers' rows
    # see only the last keys, the global layers' all of them
    "gemma3": (build_tiny_gemma3, Gemma3Adapter, {"sliding_window": 8}),
    "idefics3": (build_tiny_idefics3, Idefics3Adapter, {}),
    "internvl": (build_tiny_internvl, InternVLAdapter, {}),
    "mllama": (build_tiny_mllama, MllamaAdapter, {}),
    "mllama eager": (build_tiny_mllama, MllamaAdapter, {"attn_implementation": "eager"}),
    "qwen2": (build_tiny_qwen_vl, QwenVLAdapter, {"version": "2"}),
    "qwen2.5": (build_tiny_qwen_vl, QwenVLAdapter, {"version": "2.5"}),
    "qwen2 eager": (
        build_tiny_qwen_vl,
        QwenVLAdapter,
        {"version": "2", "attn_implementation": "eager"},
    ),
    "qwen2.5 eager": (
        build_tiny_qwen_vl,
        QwenVLAdapter,
        {"version": "2.5", "attn_implementation": "eager"},
    ),
}


@functools.cache
def tiny_model(name: str) -> LoadedModel:
    """The tiny model ``name`` of :data:`TINY_MODELS` (seed 1), as ``load`` would return it."""
    builder, adapter_class, settings = TINY_MODELS[name]
    torch.set_num_threads(2)
    model, processor = builder(seed=1, **settings)
    return LoadedModel(
        model=model, processor=processor, adapter=adapter_class(), model_id=f"tiny-{name}"
    )


def images(*sizes: tuple[int, int]) -> list[Image.Image]:
    """Noise images of these ``(width, height)`` sizes, the k-th drawn with seed k."""
    return [noise_image(width, height, seed) for seed, (width, height) in enumerate(sizes)]


def video(frames: int, width: int = 48, height: int = 32) -> Video:
    """A video of ``frames`` noise frames (seeds 10, 11, ...)."""
    return Video(frames=[noise_image(width, height, 10 + seed) for seed in range(frames)])


@contextmanager
def processor_settings(loaded: LoadedModel, **settings: Any) -> Iterator[LoadedModel]:
    """The model with these image-processor settings for the block; the old ones after it."""
    image_processor = loaded.processor.image_processor
    old = {name: getattr(image_processor, name) for name in settings}
    for name, value in settings.items():
        setattr(image_processor, name, value)
    try:
        yield loaded
    finally:
        for name, value in old.items():
            setattr(image_processor, name, value)
