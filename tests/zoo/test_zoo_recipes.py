"""Every embedded model trains through its plugin's recipe and the one training loop."""

from __future__ import annotations

import json

import pytest

from dexar_core.errors import InputError
from dexar_core.zoo import TRAINING_FACTS
from dexar_core.zoo.recipes import TrainingRecipe
from dexar_core.zoo.train import main, train, training_recipe, training_recipes
from dexar_plugins import default_catalog

EMBEDDED = sorted(default_catalog().embedded_models)


def test_every_embedded_model_ships_a_recipe():
    for name in EMBEDDED:
        assert isinstance(default_catalog().embedded_model(name).recipe, TrainingRecipe), name
    assert len(training_recipes()) == len(EMBEDDED)


@pytest.mark.parametrize("name", EMBEDDED)
def test_a_few_steps_write_a_checkpoint_with_its_card_and_facts(name, tmp_path):
    out = tmp_path / name
    outcome = train(model=name, out=out, steps=2, batch_size=2, eval_size=2, threads=1)
    assert outcome.steps == 2
    json.dumps(outcome.summary())
    card = (out / "README.md").read_text()
    recipe = training_recipe(model=name)
    assert f"python -m dexar_core.zoo.train --adapter {recipe.name} --out {out}" in card
    assert "--steps 2" in card
    facts = json.loads((out / TRAINING_FACTS).read_text())
    assert 2 in (facts.get("steps"), facts.get("training", {}).get("steps"))


def test_the_default_is_the_catalogs_default_model():
    spec = default_catalog().default_embedded_model()
    assert training_recipe() is spec.recipe


def test_model_and_adapter_together_are_refused(tmp_path):
    with pytest.raises(InputError, match="not both"):
        training_recipe(model=EMBEDDED[0], adapter="x")
    with pytest.raises(SystemExit):
        main(["--model", EMBEDDED[0], "--adapter", "x", "--out", str(tmp_path), "--steps", "1"])


def test_an_unknown_model_is_an_input_error():
    with pytest.raises(InputError, match="no-such-model"):
        training_recipe(model="no-such-model")
