"""LLaVA-NeXT end to end: the one-pass engine against the definition, explain() and the CLI
on a saved tiny checkpoint, and the variants refused with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from naive_maps import one_pass_error
from PIL import Image

from dexar_core.api import explain, load
from dexar_core.cli.main import main
from dexar_core.errors import UnsupportedModelError
from dexar_core.records import LoadedModel
from dexar_llava.next import LlavaNextAdapter
from dexar_llava.tiny_next import build_tiny_llava_next

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    torch.set_num_threads(2)
    model, processor = build_tiny_llava_next(seed=1)
    return LoadedModel(model=model, processor=processor, adapter=LlavaNextAdapter(), model_id="t")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llava-next")
    model, processor = build_tiny_llava_next(seed=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    _image(90, 40, 5).save(folder / "image.png")
    return folder


# --- the one pass equals the definition ----------------------------------------------------

CASES = {
    "square": lambda: [_image(56, 56)],
    "wide, three tiles": lambda: [_image(150, 50)],
    "tall, downscaled": lambda: [_image(120, 300)],
    "two images": lambda: [_image(90, 40), _image(40, 70, 1)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_pass_matches_the_definition(tiny, case):
    assert one_pass_error(tiny, CASES[case](), QUESTION, "red circle") <= TOLERANCE


def test_two_images_give_a_base_and_a_tile_grid_each_in_prompt_order(tiny):
    prepared = tiny.adapter.prepare(tiny, [_image(90, 40), _image(40, 70, 1)], QUESTION)
    grids = prepared.facts.grids
    assert [(grid.name, grid.image_index) for grid in grids] == [
        ("image 0, base", 0),
        ("image 0, tiles", 0),
        ("image 1, base", 1),
        ("image 1, tiles", 1),
    ]
    assert [grid.shape for grid in grids] == [(4, 4), (4, 8), (4, 4), (8, 4)]
    starts = [int(grid.positions[0]) for grid in grids]
    assert starts == sorted(starts)


# --- explain() and the CLI on a saved checkpoint -------------------------------------------


def test_explain_free_run_and_given_answer_on_a_saved_checkpoint(tiny_dir):
    loaded = load(str(tiny_dir))
    assert isinstance(loaded.adapter, LlavaNextAdapter)
    image = Image.open(tiny_dir / "image.png")
    free = explain(loaded, image, QUESTION, max_new_tokens=3)
    assert free.generated and 1 <= len(free.token_ids) <= 3
    assert free.adapter == "llava_next"
    assert [grid.shape for grid in free.grids] == [(4, 4), (4, 8)]
    for grid in range(2):
        tokens, sequence = free.upsample(grid)
        assert sequence.shape == (40, 90) and np.isfinite(tokens).all()
    given = explain(loaded, image, QUESTION, answer="a red circle")
    assert given.tokens == ("a", "red", "circle") and not given.generated
    assert given.token_maps[1].shape == (3, 4, 8)


def test_dexar_explain_on_the_saved_checkpoint(tiny_dir, tmp_path, capsys):
    args = ["explain", "--model", str(tiny_dir), "--image", str(tiny_dir / "image.png")]
    args += ["--prompt", QUESTION, "--answer", "red circle", "--out", str(tmp_path)]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    saved = json.loads((tmp_path / "explanation.json").read_text())
    assert saved["adapter"] == "llava_next"
    assert [grid["name"] for grid in saved["grids"]] == ["image 0, base", "image 0, tiles"]


# --- refusals -----------------------------------------------------------------------------


def test_a_kept_cls_feature_is_refused_with_the_reason(tiny):
    model, processor = build_tiny_llava_next(vision_feature_select_strategy="full")
    loaded = LoadedModel(model=model, processor=processor, adapter=LlavaNextAdapter(), model_id="f")
    with pytest.raises(UnsupportedModelError, match="vision_feature_select_strategy 'default'"):
        loaded.adapter.prepare(loaded, [_image(56, 56)], QUESTION)


def test_a_saved_full_strategy_checkpoint_is_refused_at_load(tmp_path):
    model, processor = build_tiny_llava_next(vision_feature_select_strategy="full")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="'full'"):
        load(str(tmp_path))


def test_llava_next_video_is_refused_with_the_reason(tmp_path):
    from transformers import LlavaNextVideoConfig

    LlavaNextVideoConfig().save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="LLaVA-NeXT-Video pools each frame"):
        load(str(tmp_path))


def test_the_llava_adapter_sends_llava_next_to_its_adapter(tiny_dir):
    from dexar_llava.adapter import LlavaAdapter

    with pytest.raises(UnsupportedModelError, match="use the llava_next adapter"):
        LlavaAdapter().load(str(tiny_dir), device=None, dtype=None, device_map=None)
