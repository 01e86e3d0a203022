"""The per-item training loss: every item weighs the same, whatever its answer's length."""

from __future__ import annotations

import math

import pytest
import torch

from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.errors import InputError
from dexar_core.zoo.batches import item_mean_loss, training_batch
from dexar_core.zoo.card import command_line
from dexar_core.zoo.train import train, training_recipe

TINIEST = {"hidden_size": 32, "text_layers": 1, "vision_layers": 1, "heads": 2}


def test_item_mean_weighs_a_one_token_answer_as_much_as_a_long_one():
    # row 0: one counted token with loss ln 4 (uniform over 4 classes);
    # row 1: three counted tokens, each predicted with probability 1/2.
    logits = torch.zeros(2, 3, 4)
    logits[1, :, 0] = math.log(3.0)  # p(class 0) = 3 / (3 + 3) = 1/2
    labels = torch.tensor([[2, -100, -100], [0, 0, 0]])
    expected_items = (math.log(4.0) + math.log(2.0)) / 2
    expected_tokens = (math.log(4.0) + 3 * math.log(2.0)) / 4
    assert item_mean_loss(logits, labels, shifted=False).item() == pytest.approx(expected_items)
    token_mean = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels)
    assert token_mean.item() == pytest.approx(expected_tokens)


def test_shifted_pairs_each_position_with_the_next_label():
    logits = torch.full((1, 3, 5), -30.0)
    logits[0, 0, 4] = logits[0, 1, 1] = 30.0  # position i predicts label i + 1 exactly
    labels = torch.tensor([[-100, 4, 1]])
    assert item_mean_loss(logits, labels, shifted=True).item() == pytest.approx(0.0, abs=1e-6)
    assert item_mean_loss(logits, labels, shifted=False).item() > 10.0


def _one_word_items(count: int):
    """Colour questions: every answer is one word, so item and token means agree."""
    items = [item for item in ShapesDataset("train", 60) if item.kind == "color"]
    return items[:count]


@pytest.mark.parametrize("adapter", ["llava", "florence2"])
def test_equals_the_models_own_loss_when_answers_have_equal_length(adapter):
    """Decoder-only (shifted) and encoder-decoder (aligned) both match transformers."""
    chosen = training_recipe(adapter=adapter)
    options = TINIEST if adapter == "llava" else {}
    model, processor = chosen.build(0, **options)
    batch = training_batch(
        processor,
        chosen.formatter(),
        _one_word_items(4),
        position_ids=chosen.position_ids,
        encoder_decoder=chosen.encoder_decoder,
    )
    with torch.no_grad():
        output = model(**batch)
    ours = item_mean_loss(output.logits, batch["labels"], shifted=not chosen.encoder_decoder)
    assert ours.item() == pytest.approx(output.loss.item(), rel=1e-5)


def test_train_refuses_an_unknown_weighting(tmp_path):
    with pytest.raises(InputError, match="loss_per"):
        train(out=tmp_path, steps=1, loss_per="sequence")


def test_the_card_command_names_a_per_item_loss_and_omits_the_default(tmp_path):
    args = ("llava", tmp_path, 0, 10, 32, 5e-4, 2, "cpu")
    assert "--loss-per item" in command_line(*args, "item")
    assert "--loss-per" not in command_line(*args, "token")
