"""Typed prompt facts: the records, the image-token convention and the shared locator."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from llava_fixtures import noise_image

from dexar_core.errors import InputError, LayoutError
from dexar_core.hf.facts import ImageTokenConvention, PromptLocator, whole_image
from dexar_core.records import ImageFacts, LoadedModel, PromptFacts
from dexar_llava.adapter import LlavaAdapter
from dexar_llava.tiny import build_tiny_llava


def test_image_facts_split_leading_tokens_from_the_grid():
    facts = ImageFacts(
        name="image 0",
        positions=[3, 4, 5, 6, 7],
        rows=2,
        cols=2,
        leading_tokens=1,
        pixel_box=(0, 0, 8, 8),
    )
    assert facts.off_grid.tolist() == [3]
    assert facts.grid.positions.tolist() == [4, 5, 6, 7]
    assert facts.grid.shape == (2, 2)
    assert facts.grid.pixel_box == (0.0, 0.0, 8.0, 8.0)
    assert not facts.positions.flags.writeable


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"positions": [4, 5, 6]}, "3 token positions"),
        ({"rows": 0, "positions": []}, "rows and cols must be 1 or more"),
        ({"leading_tokens": -1}, "leading_tokens 0 or more"),
    ],
)
def test_image_facts_refuse_counts_that_disagree(changes, match):
    fields = {"name": "image 0", "positions": [4, 5, 6, 7], "rows": 2, "cols": 2}
    with pytest.raises(LayoutError, match=match):
        ImageFacts(pixel_box=(0, 0, 8, 8), **{**fields, **changes})


def test_prompt_facts_are_frozen_and_read_only():
    image = ImageFacts(name="image 0", positions=[1, 2], rows=1, cols=2, pixel_box=(0, 0, 4, 2))
    facts = PromptFacts(images=[image], template_mask=[1, 0, 0, 1], image_token_ids=[7])
    assert facts.image_token_ids == frozenset({7})
    assert facts.grids == (image.grid,)
    assert not facts.template_mask.flags.writeable
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        facts.images = ()  # type: ignore[misc]


@pytest.fixture(scope="module")
def tiny():
    model, processor = build_tiny_llava(seed=1, image_size=32, hidden_size=64)
    adapter = LlavaAdapter()
    return LoadedModel(model=model, processor=processor, adapter=adapter, model_id="tiny")


def test_the_convention_gives_one_block_per_image_in_prompt_order(tiny):
    images = [noise_image(0, (40, 56)), noise_image(1, (32, 32))]
    prepared = tiny.adapter.prepare(tiny, images, "what color is the circle?")
    first, second = prepared.facts.images
    assert (first.name, second.name) == ("image 0", "image 1")
    assert (first.rows, first.cols, first.leading_tokens) == (4, 4, 0)
    assert first.positions[-1] < second.positions[0]
    ids = prepared.inputs["input_ids"][0].numpy()
    image_token = int(tiny.model.config.image_token_id)
    assert set(ids[np.concatenate([first.positions, second.positions])]) == {image_token}
    assert prepared.facts.image_token_ids == frozenset({image_token})


def test_the_convention_names_the_hint_when_the_counts_disagree(tiny):
    convention = ImageTokenConvention(pixel_box=whole_image, hint="say what to do")
    image = noise_image(0, (32, 32))
    processed = tiny.processor(
        text="USER: <image>\nhi ASSISTANT:", images=[image], return_tensors="pt"
    )
    with pytest.raises(InputError, match=r"2 image\(s\) of 16 tokens each were given; say what"):
        convention.image_facts(tiny, processed, [image, image])


def test_the_locator_leaves_leading_tokens_out_of_v_and_the_text_set(tiny):
    prepared = tiny.adapter.prepare(tiny, [noise_image(0, (32, 32))], "what color?")
    (image,) = prepared.facts.images
    # the same 16 image tokens read as one token on no patch before a 3x5 grid
    with_leading = ImageFacts(
        name="image 0",
        positions=image.positions,
        rows=3,
        cols=5,
        leading_tokens=1,
        pixel_box=image.pixel_box,
    )
    facts = attrs.evolve(prepared.facts, images=(with_leading,))
    layout = PromptLocator().locate(attrs.evolve(prepared, facts=facts))
    leading = int(image.positions[0])
    assert not layout.visual_mask[leading] and not layout.text_mask[leading]
    assert layout.visual_mask.sum() == 15
    assert layout.grids[0].positions.tolist() == image.positions[1:].tolist()
