"""An item that cannot be explained is recorded with its error, and the run goes on."""

from __future__ import annotations

import pytest

import dexar_core.api
from dexar_core.datasets.benchmark import as_benchmark_item
from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.errors import InputError
from dexar_core.evaluation.records import ItemResult
from dexar_core.evaluation.run import _evaluate_item


@pytest.fixture
def refused(monkeypatch):
    def explain(*args, **kwargs):
        raise InputError("the model's answer is empty; nothing to explain.")

    monkeypatch.setattr(dexar_core.api, "explain", explain)


def _item():
    return as_benchmark_item(ShapesDataset("test", 4)[2])


def test_a_generative_item_keeps_its_question_reference_and_error(refused):
    item = _item()
    explanation, result = _evaluate_item(
        None,
        item,
        units="answer tokens",
        method="dexar",
        metrics=("segmentation", "grounding"),
        seed=0,
        max_new_tokens=8,
        replacement="mean",
        catalog=None,
        options={},
    )
    assert explanation is None
    assert (result.index, result.item_id, result.kind) == (item.index, item.item_id, item.kind)
    assert (result.question, result.expected, result.answer) == (item.question, item.answer, "")
    assert result.correct is False  # the item has references: an empty answer is wrong
    assert result.error == "the model's answer is empty; nothing to explain."
    assert result.segmentation == {} and result.tokens == ()
    assert ItemResult.from_dict(result.to_dict()) == result


def test_a_contrastive_item_keeps_its_prompt_and_error(refused):
    item = _item()
    explanation, result = _evaluate_item(
        None,
        item,
        units="prompts",
        method="dexar",
        metrics=("segmentation",),
        seed=0,
        max_new_tokens=8,
        replacement="mean",
        catalog=None,
        options={},
    )
    assert explanation is None
    assert result.question == item.description and result.expected == ""
    assert result.correct is None  # a similarity has no right answer
    assert "answer is empty" in result.error
