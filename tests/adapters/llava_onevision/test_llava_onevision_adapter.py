"""LLaVA-OneVision end to end: the one-pass engine against the definition (tiled, shrunk by
anyres-max, several images as base views), where a spot is found in each grid, the
newline tokens in neither set, explain() and the CLI, and the video refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from painted_spots import assert_spot_found_in_each_grid
from PIL import Image

from dexar_core.api import explain, load
from dexar_core.cli.main import main
from dexar_core.engine import attention_gradients
from dexar_core.errors import UnsupportedModelError
from dexar_core.images import Video
from dexar_core.records import LoadedModel
from dexar_llava.onevision import LlavaOnevisionAdapter, shrunk_grid
from dexar_llava.tiny_onevision import build_tiny_llava_onevision
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    torch.set_num_threads(2)
    # anyres_max_4: grids past four tiles' worth of features are shrunk
    model, processor = build_tiny_llava_onevision(seed=1, max_tiles=4)
    return LoadedModel(
        model=model, processor=processor, adapter=LlavaOnevisionAdapter(), model_id="t"
    )


CASES = {
    "wide, two tiles": [(80, 48)],
    "large, shrunk": [(300, 300)],
    "two images, base views": [(80, 48), (30, 60)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_pass_matches_the_definition(tiny, case):
    adapter = tiny.adapter
    images = [_image(*size, seed) for seed, size in enumerate(CASES[case])]
    prepared = adapter.prepare(tiny, images, QUESTION)
    layout = adapter.locator.locate(prepared)
    answer_ids = adapter.encode_answer(tiny, prepared, "red circle")
    forced = adapter.teacher_forced(tiny, prepared, answer_ids)
    record = attention_gradients(tiny, forced, layout.with_length(forced.key_length), [0, 1])
    reference = naive_attention_gradients(tiny, prepared, answer_ids, [0, 1])
    assert record.gradients[..., record.layout.visual_mask].max() > 0
    assert relative_error(record.gradients, reference) <= TOLERANCE


def test_grids_of_one_image_and_of_several(tiny):
    one = tiny.adapter.prepare(tiny, [_image(300, 300)], QUESTION).facts.grids
    # 300 px fits 5 x 5 tiles of 60 px: 20 x 20 features, shrunk by sqrt(400 / (4 * 16)) = 2.5
    assert [(grid.name, grid.shape) for grid in one] == [
        ("image 0, base", (4, 4)),
        ("image 0, tiles", (8, 8)),
    ]
    assert shrunk_grid(tiny.model.config, 300, 300).pixel_box == (0.0, 0.0, 300.0, 300.0)
    several = tiny.adapter.prepare(tiny, [_image(80, 48), _image(30, 60, 1)], QUESTION)
    assert [(grid.name, grid.shape) for grid in several.facts.grids] == [
        ("image 0", (4, 4)),
        ("image 1", (4, 4)),
    ]


def test_newline_tokens_are_in_neither_set(tiny):
    prepared = tiny.adapter.prepare(tiny, [_image(80, 48)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    ids = prepared.inputs["input_ids"][0].numpy()
    image_tokens = ids == tiny.model.config.image_token_id
    newlines = image_tokens & ~layout.visual_mask
    tiles = prepared.facts.grids[1]
    assert newlines.sum() == tiles.height  # one after each row of the tile grid
    assert not layout.text_mask[newlines].any()
    assert layout.text_mask.sum() == ids.size - image_tokens.sum()


@pytest.mark.parametrize(
    ("size", "spot"),
    [((80, 48), (20, 30)), ((80, 48), (62, 12)), ((300, 300), (230, 80)), ((48, 110), (24, 90))],
)
def test_a_painted_spot_is_found_in_each_grid_at_its_place(tiny, size, spot):
    assert_spot_found_in_each_grid(tiny, size, spot, side=min(size) / 4)


def test_a_video_is_refused_with_the_reason(tiny):
    video = Video(frames=(_image(60, 60), _image(60, 60, 1)))
    with pytest.raises(UnsupportedModelError, match="pools each video frame"):
        tiny.adapter.prepare(tiny, [video], QUESTION)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llava-onevision")
    model, processor = build_tiny_llava_onevision(seed=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    _image(90, 40, 5).save(folder / "image.png")
    return folder


def test_explain_free_run_and_given_answer_on_a_saved_checkpoint(tiny_dir):
    loaded = load(str(tiny_dir))
    assert isinstance(loaded.adapter, LlavaOnevisionAdapter)
    image = Image.open(tiny_dir / "image.png")
    free = explain(loaded, image, QUESTION, max_new_tokens=3)
    assert free.generated and 1 <= len(free.token_ids) <= 3
    for grid in range(2):
        tokens, sequence = free.upsample(grid)
        assert sequence.shape == (40, 90) and np.isfinite(tokens).all()
    given = explain(loaded, [image, _image(30, 60)], QUESTION, answer="a red circle")
    assert given.tokens == ("a", "red", "circle") and not given.generated
    assert [grid.name for grid in given.grids] == ["image 0", "image 1"]


def test_dexar_explain_on_the_saved_checkpoint(tiny_dir, tmp_path, capsys):
    args = ["explain", "--model", str(tiny_dir), "--image", str(tiny_dir / "image.png")]
    args += ["--prompt", QUESTION, "--answer", "red circle", "--out", str(tmp_path)]
    code = main(args)
    assert code == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "explanation.json").read_text())
    assert saved["adapter"] == "llava_onevision"
    assert [grid["name"] for grid in saved["grids"]] == ["image 0, base", "image 0, tiles"]
