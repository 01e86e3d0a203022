"""The embedded shapes-clip checkpoint: ships small, loads offline, points at the named object."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dexar_core
from dexar_core.datasets.shapes import ShapesDataset
from dexar_core.zoo.train import main as train_main
from dexar_open_clip import CHECKPOINTS
from dexar_open_clip.recipe import object_name
from dexar_plugins import default_catalog

torch.set_num_threads(2)

FOLDER = CHECKPOINTS / "shapes-clip"
ONE_OBJECT_ITEMS = 6


@pytest.fixture(scope="module")
def shapes_clip():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        return dexar_core.load("shapes-clip")


@pytest.fixture(scope="module")
def one_object_items():
    test = ShapesDataset("test")
    items = (test[i] for i in range(len(test)))
    singles = (item for item in items if len(item.objects) == 1)
    return [next(singles) for _ in range(ONE_OBJECT_ITEMS)]


def _peak_inside(explanation, mask) -> bool:
    maps, _ = explanation.upsample()
    row, col = np.unravel_index(int(np.argmax(maps[0])), maps[0].shape)
    return bool(mask[row, col])


def test_checkpoint_is_small_and_has_a_model_card():
    size = sum(path.stat().st_size for path in FOLDER.iterdir())
    assert size < 10 * 2**20
    card = (FOLDER / "README.md").read_text()
    assert "caption -> image top-1" in card and "seed" in card
    record = json.loads((FOLDER / "dexar_training.json").read_text())
    assert record["metrics"]["retrieval"]["image_to_caption_top1"] > 0.3
    assert record["metrics"]["naming"]["accuracy"] > 0.9
    spec = default_catalog().embedded_model("shapes-clip")
    assert spec.adapter == "open_clip" and spec.example_image.is_file()
    assert spec.example_prompt


def test_shapes_clip_loads_offline_as_an_open_clip_model(shapes_clip):
    from open_clip.model import CLIP

    assert isinstance(shapes_clip.model, CLIP)
    assert shapes_clip.adapter.name == "open_clip"
    assert shapes_clip.model_id == "shapes-clip"


@pytest.mark.parametrize("method", ["dexar", "legrad"])
def test_map_of_a_one_object_item_peaks_inside_the_object(shapes_clip, one_object_items, method):
    hits = []
    for item in one_object_items:
        prompt = object_name(item.objects[0])
        explanation = dexar_core.explain(shapes_clip, item.image, [prompt], method=method)
        hits.append(_peak_inside(explanation, item.objects[0].mask))
    assert hits[0], "the first one-object test item's map misses its object"
    # Measured 3/6 (dexar) and 4/6 (legrad); a uniformly random peak lands inside with
    # p ~ 0.056, so 3 of 6 by chance has probability ~ 0.004.
    assert sum(hits) >= ONE_OBJECT_ITEMS // 2, hits


def test_the_true_name_scores_highest_on_a_one_object_item(shapes_clip, one_object_items):
    item = one_object_items[0]
    true_name = object_name(item.objects[0])
    names = [true_name, *(n for n in ("a red circle", "a blue square") if n != true_name)]
    explanation = dexar_core.explain(shapes_clip, item.image, names, method="legrad")
    similarities = explanation.metadata["similarities"]
    assert int(np.argmax(similarities)) == 0, (names, similarities)


def test_training_command_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "smoke"
    arguments = ["--model", "shapes-clip", "--out", str(out), "--steps", "2", "--batch-size", "4"]
    status = train_main([*arguments, "--eval-size", "8"])
    assert status == 0
    assert "caption_to_image_top1" in capsys.readouterr().out
    for name in ("open_clip_config.json", "open_clip_model.safetensors", "tokenizer.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "dexar_training.json").read_text())
    assert record["training"]["steps"] == 2 and record["training"]["seed"] == 0
    loaded = dexar_core.load(f"open_clip:{out}")
    explanation = dexar_core.explain(loaded, ShapesDataset("test", size=1)[0].image, "a circle")
    assert explanation.token_map_stack.shape == (1, 8, 8)
