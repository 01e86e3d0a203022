"""The embedded ``shapes-blip2`` checkpoint: registered, small, documented, explainable."""

from __future__ import annotations

import json

import numpy as np

from dexar_blip2.adapter import Blip2Adapter
from dexar_core.api import explain, load
from dexar_core.datasets.shapes import ShapesDataset
from dexar_plugins.manager import default_catalog

NAME = "shapes-blip2"


def test_the_checkpoint_is_registered_small_and_has_a_model_card_with_its_accuracy():
    spec = default_catalog().embedded_model(NAME)
    assert spec.adapter == "blip2"
    size = sum(path.stat().st_size for path in spec.path.iterdir())
    assert size < 10 * 1024 * 1024
    facts = json.loads((spec.path / "dexar_training.json").read_text())
    card = (spec.path / "README.md").read_text()
    assert facts["command"] in card
    for kind in ("color", "shape", "position", "caption"):
        assert f"| {kind} | {facts['accuracy'][kind]:.1%}" in card


def test_the_checkpoint_loads_by_name_and_explains_a_test_image():
    loaded = load(NAME)
    assert isinstance(loaded.adapter, Blip2Adapter)
    item = next(iter(ShapesDataset("test", 4)))
    result = explain(loaded, item.image, item.question, answer=item.answer)
    assert result.model_id == NAME
    assert result.token_map_stack.shape[1:] == (8, 8)
    assert np.isfinite(result.sequence_map).all()
