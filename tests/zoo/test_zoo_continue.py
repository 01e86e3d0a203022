"""Training on from an earlier checkpoint: weights, data stream, provenance, bad folders."""

from __future__ import annotations

import json

import pytest
import torch

from dexar_core.errors import InputError
from dexar_core.zoo.train import load_parent, main, train, training_recipe

TINIEST = {"hidden_size": 32, "text_layers": 1, "vision_layers": 1, "heads": 2}
SMALL_RUN = {"batch_size": 2, "eval_size": 2, "model_options": TINIEST}

LLAVA_RECIPE = training_recipe(adapter="llava")


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo") / "parent"
    train(out=out, seed=3, steps=2, **SMALL_RUN)
    return out


def fresh_model():
    model, _ = LLAVA_RECIPE.build(0, image_size=64, **TINIEST)
    return model


def test_load_parent_puts_the_parents_weights_into_a_fresh_model(parent):
    from transformers import LlavaForConditionalGeneration

    model = fresh_model()
    facts = load_parent(parent, model, "llava", 64)
    saved = LlavaForConditionalGeneration.from_pretrained(parent).state_dict()
    for name, weight in model.state_dict().items():
        assert torch.equal(weight, saved[name]), name
    assert facts["steps"] == 2 and facts["batch_size"] == 2 and facts["first_item"] == 0
    assert facts["init_from"] is None
    assert "--seed 3" in facts["command"]


def test_continued_run_reads_on_and_records_the_chain(parent, tmp_path):
    child = train(out=tmp_path / "child", seed=3, steps=1, init=parent, **SMALL_RUN)
    assert child.first_item == 2 * 2
    assert child.total_steps() == 3
    assert child.command.endswith(f"--init {parent}")
    assert child.commands()[0] == child.init_from["command"]
    grandchild = train(
        out=tmp_path / "grand", seed=3, steps=1, init=tmp_path / "child", **SMALL_RUN
    )
    assert grandchild.first_item == 2 * 2 + 1 * 2
    assert grandchild.total_steps() == 4
    assert grandchild.commands() == [*child.commands(), grandchild.command]
    facts = json.loads((tmp_path / "grand" / "dexar_training.json").read_text())
    assert facts["init_from"]["init_from"]["command"] == child.commands()[0]
    card = (tmp_path / "grand" / "README.md").read_text()
    reproduce = card.split("Reproduce with:")[1].split("```")[1].strip().splitlines()
    assert reproduce == grandchild.commands()
    assert "4 steps in all" in card and "Training read 8 items" in card


def test_a_continued_run_reads_the_items_a_longer_fresh_run_reads_next(
    parent, tmp_path, monkeypatch
):
    import dexar_core.zoo.generative as module

    read: list[list[str]] = []
    real_batch = module.training_batch

    def recording_batch(processor, format_prompt, items, **options):
        read.append(
            [f"{item.question}|{item.answer}|{item.pixels.tobytes().hex()}" for item in items]
        )
        return real_batch(processor, format_prompt, items, **options)

    monkeypatch.setattr(module, "training_batch", recording_batch)
    train(out=tmp_path / "fresh", seed=3, steps=3, **SMALL_RUN)
    fresh_third_step = read[2]
    read.clear()
    train(out=tmp_path / "child", seed=3, steps=1, init=parent, **SMALL_RUN)
    assert read == [fresh_third_step]


def test_cli_takes_init(parent, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["--out", str(out), "--seed", "3", "--steps", "1", "--batch-size", "2"]
    with pytest.raises(SystemExit):
        main([*args, "--eval-size", "2", "--init", str(tmp_path / "missing")])
    assert "has no dexar_training.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"adapter": "qwen2vl"}, "trained with adapter 'qwen2vl'"),
        ({"image_size": 48}, "trained with image_size 48"),
    ],
)
def test_init_from_another_recipe_raises_input_error(parent, tmp_path, change, message):
    folder = tmp_path / "edited"
    folder.mkdir()
    for path in parent.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    facts = json.loads((folder / "dexar_training.json").read_text())
    (folder / "dexar_training.json").write_text(json.dumps({**facts, **change}))
    with pytest.raises(InputError, match=message):
        load_parent(folder, fresh_model(), "llava", 64)


def test_init_with_weights_of_another_shape_raises_input_error(parent):
    model, _ = LLAVA_RECIPE.build(0, image_size=64, **{**TINIEST, "hidden_size": 48})
    with pytest.raises(InputError, match="could not load the weights"):
        load_parent(parent, model, "llava", 64)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "is not valid JSON"), ('{"adapter": "llava", "image_size": 64}', "lacks")],
)
def test_init_with_broken_training_facts_raises_input_error(tmp_path, text, message):
    (tmp_path / "dexar_training.json").write_text(text)
    with pytest.raises(InputError, match=message):
        load_parent(tmp_path, fresh_model(), "llava", 64)
