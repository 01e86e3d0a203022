"""An item that cannot be explained is recorded with its error, and the run goes on."""

from __future__ import annotations

import pytest

import dexar_core.explaining
from dexar_core.datasets.benchmark import as_benchmark_item
from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.errors import InputError
from dexar_core.evaluation.items import evaluate_items
from dexar_core.evaluation.records import ItemResult


@pytest.fixture
def refused(monkeypatch):
    def batch_explanations(loaded, items, **kwargs):
        for _ in items:
            yield InputError("the model's answer is empty; nothing to explain.")

    monkeypatch.setattr(dexar_core.explaining, "batch_explanations", batch_explanations)


def _evaluated(units: str, metrics: tuple[str, ...]):
    """A shapes item, and its one (explanation, result) pair from ``evaluate_items``."""
    item = as_benchmark_item(ShapesDataset("test", 4)[2])
    [evaluated] = evaluate_items(
        None,
        [item],
        units=units,
        method="dexar",
        metrics=metrics,
        seed=0,
        max_new_tokens=8,
        replacement="mean",
        catalog=None,
        options={},
    )
    return item, evaluated


def test_a_generative_item_keeps_its_question_reference_and_error(refused):
    item, (explanation, result) = _evaluated("answer tokens", ("segmentation", "grounding"))
    assert explanation is None
    assert (result.index, result.item_id, result.kind) == (item.index, item.item_id, item.kind)
    assert (result.question, result.expected, result.answer) == (item.question, item.answer, "")
    assert result.correct is False  # the item has references: an empty answer is wrong
    assert result.error == "the model's answer is empty; nothing to explain."
    assert result.segmentation == {} and result.tokens == ()
    assert ItemResult.from_dict(result.to_dict()) == result


def test_a_contrastive_item_keeps_its_prompt_and_error(refused):
    item, (explanation, result) = _evaluated("prompts", ("segmentation",))
    assert explanation is None
    assert result.question == item.description and result.expected == ""
    assert result.correct is None  # a similarity has no right answer
    assert "answer is empty" in result.error
