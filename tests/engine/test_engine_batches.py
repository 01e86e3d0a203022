"""Several items through the model together give each item its unbatched explanation.

``explain_batch`` runs the items' free runs in one ``generate`` and the prompts of given
answers in one prefill (left-padded, :mod:`dexar_core.hf.batched`), then explains each
item's answer rows from its own part of the batch's cache. Every array of every item's
explanation must equal what ``explain`` gives it alone (float32, within 1e-5 of the
largest entry), for free runs and given answers, prompts of other lengths in one batch,
and a last batch that is not full.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest

from dexar_core import BatchItem, explain, explain_batch, load
from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.errors import InputError
from dexar_plugins.testing.tolerance import assert_float32_close

ARRAYS = ("token_maps", "sequence_maps", "raw_token_maps", "raw_sequence_maps", "head_weights")
GIVEN = ("a red circle", "triangle")


def _items(count: int) -> list[BatchItem]:
    """Shapes items, free runs and given answers mixed; their prompts differ in length."""
    split = ShapesDataset("test", seed=0, image_size=64)
    items = []
    for index in range(count):
        answer = GIVEN[index // 2 % len(GIVEN)] if index % 2 else None
        items.append(
            BatchItem(image=split[index].image, prompt=split[index].question, answer=answer)
        )
    return items


def assert_same_explanation(actual, expected) -> None:
    """Every array within float32 rounding of sums up to 64 terms; texts and ids equal."""
    assert actual.answer == expected.answer
    assert actual.token_ids == expected.token_ids
    assert actual.generated == expected.generated
    assert actual.sequence_fallback == expected.sequence_fallback
    for name in ARRAYS:
        assert_float32_close(getattr(actual, name), getattr(expected, name), terms=64, err_msg=name)
    assert_float32_close(actual.token_weights, expected.token_weights, terms=64)


@contextmanager
def _counted(module, name: str):
    calls = []
    original = getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    setattr(module, name, counting)
    try:
        yield calls
    finally:
        setattr(module, name, original)


@pytest.mark.parametrize("name", ["shapes-llava", "shapes-qwen2vl"])
def test_batch_equals_each_item_alone(name):
    loaded = load(name)
    items = _items(6)
    with _counted(loaded.model, "generate") as generates:
        batched = explain_batch(loaded, items, batch_size=4, max_new_tokens=24)
    # the first batch: one generate of its two free runs, one prefill of its two given
    # answers; the last (one of each): the free run, and no batch prefill for one answer
    assert len(generates) == 3
    for item, explanation in zip(items, batched, strict=True):
        alone = explain(loaded, item.image, item.prompt, item.answer, max_new_tokens=24)
        assert_same_explanation(explanation, alone)
    assert loaded.adapter.batches


def test_batch_size_one_and_tuples_give_the_same_explanations():
    loaded = load("shapes-llava")
    items = _items(2)
    tuples = [(item.image, item.prompt, item.answer) for item in items]
    for one, other in zip(
        explain_batch(loaded, items, batch_size=1, max_new_tokens=16),
        explain_batch(loaded, tuples, batch_size=2, max_new_tokens=16),
        strict=True,
    ):
        assert_same_explanation(other, one)


def test_prefix_lm_batch_equals_each_item_alone(paligemma):
    loaded = paligemma()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    items = [
        BatchItem(image=images[0], prompt="what color is it?", answer="red"),
        BatchItem(image=images[1], prompt="what is the shape at the left?", answer="a square"),
        BatchItem(image=images[2], prompt="where?"),
    ]
    for item, explanation in zip(
        items, explain_batch(loaded, items, batch_size=3, max_new_tokens=6), strict=True
    ):
        alone = explain(loaded, item.image, item.prompt, item.answer, max_new_tokens=6)
        assert_same_explanation(explanation, alone)


@pytest.mark.parametrize("name", ["shapes-blip2", "shapes-florence2"])
def test_an_adapter_that_cannot_batch_runs_one_at_a_time(name):
    loaded = load(name)
    assert not loaded.adapter.batches
    items = _items(2)
    with _counted(loaded.model, "generate") as generates:
        batched = explain_batch(loaded, items, batch_size=2, max_new_tokens=12)
    assert len(generates) == 1  # the free run alone; the given answer generates nothing
    for item, explanation in zip(items, batched, strict=True):
        assert_same_explanation(
            explanation, explain(loaded, item.image, item.prompt, item.answer, max_new_tokens=12)
        )


@pytest.mark.parametrize("size", [0, -2, 1.5, True, "4"])
def test_a_bad_batch_size_is_refused(size):
    loaded = load("shapes-llava")
    with pytest.raises(InputError, match="batch_size must be a whole number"):
        explain_batch(loaded, _items(1), batch_size=size)


def test_a_bad_item_is_named_by_its_position():
    loaded = load("shapes-llava")
    items = [*_items(1), BatchItem(image=_items(1)[0].image, prompt="   ")]
    with pytest.raises(InputError, match="batch item 1"):
        explain_batch(loaded, items, batch_size=2)
    with pytest.raises(InputError, match="a batch item is a BatchItem"):
        explain_batch(loaded, ["not an item"])
