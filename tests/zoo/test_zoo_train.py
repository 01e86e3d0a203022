"""Training tiny models on the shapes benchmark, and the shipped shapes-llava checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.errors import InputError
from dexar_core.zoo.answers import generate_answers
from dexar_core.zoo.train import main, train, training_recipe

LLAVA = Path(__file__).resolve().parents[2] / "adapters" / "dexar_llava"
CHECKPOINT = LLAVA / "checkpoints" / "shapes-llava"
EXAMPLE = LLAVA / "example.png"
EXAMPLE_TEST_INDEX = 183  # the test item example.png was saved from
TINIEST = {"hidden_size": 32, "text_layers": 1, "vision_layers": 1, "heads": 2}

LLAVA_RECIPE = training_recipe(adapter="llava")


def test_cli_smoke_run_writes_a_loadable_checkpoint(tmp_path, capsys):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    out = tmp_path / "smoke"
    status = main(["--out", str(out), "--steps", "2", "--batch-size", "4", "--eval-size", "4"])
    assert status == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (out / name).is_file(), name
    facts = json.loads((out / "dexar_training.json").read_text())
    assert facts["steps"] == 2
    assert "all" in facts["accuracy"]
    assert set(facts["accuracy"]) <= {"color", "shape", "position", "caption", "all"}
    card = (out / "README.md").read_text()
    assert "--steps 2" in card and "--batch-size 4" in card
    model = LlavaForConditionalGeneration.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    item = ShapesDataset("test", 1)[0]
    answers = generate_answers(model, processor, LLAVA_RECIPE.formatter(), [item], 3)
    assert isinstance(answers[0], str)


def test_same_seed_reproduces_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    options = {"steps": 2, "batch_size": 2, "eval_size": 2, "model_options": TINIEST}
    first = train(out=tmp_path / "a", seed=1, **options)
    second = train(out=tmp_path / "b", seed=1, **options)
    assert first.accuracy == second.accuracy
    weights_a = load_file(tmp_path / "a" / "model.safetensors")
    weights_b = load_file(tmp_path / "b" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name, weight in weights_a.items():
        assert torch.equal(weight, weights_b[name]), name


def test_minutes_budget_stops_at_steps_when_steps_come_first(tmp_path):
    report = train(
        out=tmp_path, steps=3, minutes=5, batch_size=2, eval_size=2, model_options=TINIEST
    )
    assert report.steps == 3


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"adapter": "gpt"}, "adapter to be one of"),
        ({}, "neither"),
        ({"steps": 0}, "steps to be positive"),
        ({"steps": 1, "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_raise_input_error(tmp_path, arguments, message):
    with pytest.raises(InputError, match=message):
        train(out=tmp_path, **arguments)


def test_schedule_warms_up_linearly_then_decays_to_a_tenth():
    assert LLAVA_RECIPE.learning_rate_factor(0, 100, 10) == pytest.approx(0.1)
    assert LLAVA_RECIPE.learning_rate_factor(9, 100, 10) == pytest.approx(1.0)
    assert LLAVA_RECIPE.learning_rate_factor(10, 100, 10) == pytest.approx(1.0)
    assert LLAVA_RECIPE.learning_rate_factor(100, 100, 10) == pytest.approx(0.1)
    values = [LLAVA_RECIPE.learning_rate_factor(step, 100, 10) for step in range(10, 101)]
    assert values == sorted(values, reverse=True)


@pytest.fixture(scope="module")
def shipped():
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(CHECKPOINT, local_files_only=True)
    processor = AutoProcessor.from_pretrained(CHECKPOINT, local_files_only=True)
    return model.eval(), processor


def test_shipped_checkpoint_is_small_and_documented():
    assert (CHECKPOINT / "model.safetensors").stat().st_size < 10 * 2**20
    card = (CHECKPOINT / "README.md").read_text()
    assert "python -m dexar_core.zoo.train" in card
    facts = json.loads((CHECKPOINT / "dexar_training.json").read_text())
    assert set(facts["accuracy"]) == {"color", "shape", "position", "caption", "all"}
    assert f"{facts['accuracy']['all']:.1%}" in card
    link = facts
    while link is not None:  # every command of a chain of continued runs
        assert link["command"] in card
        link = link.get("init_from")


BAR_CHECKPOINTS = {
    "shapes-llava": CHECKPOINT,
    "shapes-qwen2vl": LLAVA.parent / "dexar_qwen_vl" / "checkpoints" / "shapes-qwen2vl",
}
"""The checkpoints the accuracy bar of issues 4 and 5 applies to (both meet it)."""


@pytest.mark.parametrize("folder", list(BAR_CHECKPOINTS.values()), ids=list(BAR_CHECKPOINTS))
def test_shipped_checkpoint_meets_the_accuracy_bar(folder):
    facts = json.loads((folder / "dexar_training.json").read_text())
    assert facts["accuracy"]["color"] >= 0.95
    assert facts["accuracy"]["position"] >= 0.95
    assert facts["accuracy"]["shape"] >= 0.85
    assert facts["accuracy"]["caption"] >= 0.75


def test_shipped_checkpoint_answers_a_test_colour_question(shipped):
    model, processor = shipped
    item = next(item for item in ShapesDataset("test", 50) if item.kind == "color")
    format_prompt = LLAVA_RECIPE.formatter()
    assert generate_answers(model, processor, format_prompt, [item]) == [item.answer]


def test_example_image_is_a_benchmark_test_image_the_model_reads(shipped):
    model, processor = shipped
    item = ShapesDataset("test")[EXAMPLE_TEST_INDEX]
    with Image.open(EXAMPLE) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert np.array_equal(pixels, item.pixels)
    question = "what color is the circle?"
    example = attrs.evolve(item, question=question, answer="red")
    format_prompt = LLAVA_RECIPE.formatter()
    assert generate_answers(model, processor, format_prompt, [example]) == ["red"]
