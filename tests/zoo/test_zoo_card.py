"""The model card says when a checkpoint is below the embedded models' accuracy bar."""

from __future__ import annotations

from pathlib import Path

import torch

from dexar_core.zoo.card import ACCURACY_BAR, TrainingReport, _model_card, below_bar
from dexar_core.zoo.train import training_recipe

LLAVA_RECIPE = training_recipe(adapter="llava")


def report(accuracy: dict[str, float]) -> TrainingReport:
    return TrainingReport(
        adapter="llava",
        out=Path("shapes-test"),
        seed=0,
        steps=10,
        batch_size=2,
        learning_rate=5e-4,
        seconds=60.0,
        device="cpu",
        accuracy={**accuracy, "all": 0.5},
        heldout_accuracy={**accuracy, "all": 0.5},
        final_loss=0.1,
        command="python -m dexar_core.zoo.train --adapter llava --out shapes-test --steps 10",
    )


def card(accuracy: dict[str, float]) -> str:
    model = torch.nn.Linear(2, 3)
    return _model_card(model, report(accuracy), LLAVA_RECIPE, eval_size=4, image_size=64)


def test_below_bar_names_exactly_the_kinds_under_it():
    assert below_bar(dict(ACCURACY_BAR)) == []
    assert below_bar({**ACCURACY_BAR, "shape": 0.84, "caption": 0.2}) == ["shape", "caption"]
    assert below_bar({}) == list(ACCURACY_BAR)


def test_card_of_a_checkpoint_under_the_bar_has_a_limitations_section():
    text = card({**ACCURACY_BAR, "shape": 0.5})
    assert "## Limitations" in text
    assert "shape 50.0%" in text
    assert "color 95.0%" not in text.split("## Limitations")[1]


def test_card_of_a_checkpoint_meeting_the_bar_has_none():
    assert "Limitations" not in card(dict(ACCURACY_BAR))


def test_card_says_how_the_loss_weighed_the_answer_tokens():
    import attrs

    model = torch.nn.Linear(2, 3)
    by_item = attrs.evolve(report(dict(ACCURACY_BAR)), loss_per="item")
    text = _model_card(model, by_item, LLAVA_RECIPE, eval_size=4, image_size=64)
    assert "every item weighs the same" in text
    assert "token mean" in card(dict(ACCURACY_BAR))
