"""The one-pass engine equals the definition (one forward per answer token, one
``autograd.grad`` per token and layer) to 1e-5 relative on every layer, for each generative
family on the images its processor treats apart: square, wide and tall, large ones that it
scales or tiles, several images, videos, and the settings that change the image tokens."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import pytest
from one_pass import one_pass_error
from tiny_families import images, processor_settings, tiny_model, video

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


class Case(NamedTuple):
    model: str  # a name of tiny_families.TINY_MODELS
    visuals: Callable[[], list[Any]]
    answer: str | None = "red circle"  # None: the model's own answer, 3 tokens at most
    image_processor: Mapping[str, Any] = MappingProxyType({})  # for this case only
    slow: bool = False


CASES = {
    "llava_next square": Case("llava_next", lambda: images((56, 56))),
    "llava_next wide, three tiles": Case("llava_next", lambda: images((150, 50))),
    "llava_next tall, downscaled": Case("llava_next", lambda: images((120, 300))),
    "llava_next two images": Case("llava_next", lambda: images((90, 40), (40, 70))),
    "llava_onevision wide, two tiles": Case("llava_onevision", lambda: images((80, 48))),
    # anyres-max shrinks the tile grid
    "llava_onevision large, shrunk": Case("llava_onevision", lambda: images((300, 300))),
    # several images are base views only
    "llava_onevision two images": Case("llava_onevision", lambda: images((80, 48), (30, 60))),
    "mistral3 square": Case("mistral3", lambda: images((56, 56))),
    "mistral3 wide": Case("mistral3", lambda: images((150, 50))),
    "mistral3 large, scaled down": Case("mistral3", lambda: images((900, 500))),
    "mistral3 two images": Case("mistral3", lambda: images((90, 40), (40, 70))),
    # sliding windows shorter than the prompt
    "gemma3 square": Case("gemma3", lambda: images((56, 56))),
    "gemma3 wide": Case("gemma3", lambda: images((150, 50))),
    "gemma3 two images": Case("gemma3", lambda: images((90, 40), (40, 70))),
    "gemma3 pan-and-scan, three crops": Case(
        "gemma3",
        lambda: images((150, 50)),
        image_processor={"do_pan_and_scan": True, "pan_and_scan_min_crop_size": 24},
    ),
    "idefics3 square": Case("idefics3", lambda: images((50, 50))),
    "idefics3 wide": Case("idefics3", lambda: images((150, 50))),
    "idefics3 two images": Case("idefics3", lambda: images((90, 40), (40, 70))),
    "internvl one view": Case("internvl", lambda: images((32, 32))),
    "internvl tall": Case("internvl", lambda: images((40, 90))),
    "internvl two images": Case("internvl", lambda: images((150, 50), (60, 60))),
    # the cross-attention layers only: their keys are the tiles' vision features
    "mllama square, one tile": Case(
        "mllama", lambda: images((50, 50)), answer="a red circle", slow=True
    ),
    "mllama wide, three tiles": Case(
        "mllama", lambda: images((130, 48)), answer="a red circle", slow=True
    ),
    "mllama two images": Case(
        "mllama", lambda: images((100, 100), (90, 40)), answer="a red circle", slow=True
    ),
    "mllama tall, eager": Case(
        "mllama eager", lambda: images((40, 120)), answer="a red circle", slow=True
    ),
    # M-RoPE positions: the generated answer, as a free run explains it
    "qwen2 square": Case("qwen2", lambda: images((64, 64)), answer=None),
    "qwen2 wide": Case("qwen2", lambda: images((80, 48)), answer=None),
    "qwen2 tall, resized": Case("qwen2", lambda: images((50, 150)), answer=None),
    "qwen2 two images": Case("qwen2", lambda: images((80, 48), (32, 64)), answer=None),
    "qwen2 video": Case("qwen2", lambda: [video(4)], answer=None),
    "qwen2.5 wide": Case("qwen2.5", lambda: images((80, 48)), answer=None),
    "qwen2.5 two images": Case("qwen2.5", lambda: images((64, 64), (40, 100)), answer=None),
    "qwen2.5 image and odd video": Case(
        "qwen2.5", lambda: [*images((48, 32)), video(3)], answer=None
    ),
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(name, marks=[pytest.mark.slow] if CASES[name].slow else []) for name in CASES],
)
def test_one_pass_matches_the_definition(case):
    model, visuals, answer, settings, _ = CASES[case]
    with processor_settings(tiny_model(model), **settings) as loaded:
        error = one_pass_error(loaded, visuals(), QUESTION, answer)
    assert error <= TOLERANCE
