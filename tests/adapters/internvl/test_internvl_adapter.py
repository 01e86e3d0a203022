"""InternVL end to end: the flat image block split into tiles and the thumbnail as the
processor tiles, the one-pass engine against the definition, explain() and the CLI on a
saved tiny checkpoint, perturbed pixels as a full prepare gives them, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from naive_maps import one_pass_error
from PIL import Image

from dexar_core.api import explain, load
from dexar_core.cli.main import main
from dexar_core.errors import InputError, UnsupportedModelError
from dexar_core.images import Video
from dexar_core.records import LoadedModel
from dexar_internvl.adapter import InternVLAdapter, tile_arrangement
from dexar_internvl.tiny import build_tiny_internvl

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    torch.set_num_threads(2)
    model, processor = build_tiny_internvl(seed=1)
    return LoadedModel(model=model, processor=processor, adapter=InternVLAdapter(), model_id="t")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-internvl")
    model, processor = build_tiny_internvl(seed=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    _image(90, 40, 5).save(folder / "image.png")
    return folder


# --- where the views lie ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "tiles"),
    [((32, 32), (1, 1)), ((60, 60), (2, 2)), ((150, 50), (2, 6)), ((40, 90), (5, 2))],
)
def test_the_tiles_are_the_processors(tiny, size, tiles):
    image = _image(*size)
    prepared = tiny.adapter.prepare(tiny, [image], QUESTION)
    rows, cols = tiles
    assert tile_arrangement(tiny.processor.image_processor, *size) == tiles
    pixels = tiny.processor.image_processor(images=[image], crop_to_patches=True)
    views = rows * cols + (rows * cols > 1)
    assert pixels["num_patches"] == [views]
    grids = prepared.facts.grids
    whole = (0.0, 0.0, *map(float, size))
    if views == 1:
        assert [(grid.name, grid.shape, grid.pixel_box) for grid in grids] == [
            ("image 0", (2, 2), whole)
        ]
        return
    tile_grid, thumbnail = grids
    assert (
        tile_grid.name == f"image 0, {rows}x{cols} tiles" and thumbnail.name == "image 0, thumbnail"
    )
    assert tile_grid.shape == (2 * rows, 2 * cols) and thumbnail.shape == (2, 2)
    assert tile_grid.pixel_box == thumbnail.pixel_box == whole
    assert thumbnail.positions.min() > tile_grid.positions.max()


def test_the_block_markers_are_never_visual(tiny):
    prepared = tiny.adapter.prepare(tiny, [_image(90, 40)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    ids = prepared.inputs["input_ids"][0].numpy()
    assert np.array_equal(layout.visual_mask, ids == tiny.model.config.image_token_id)
    markers = np.isin(ids, [tiny.processor.start_image_token_id, tiny.processor.end_image_token_id])
    assert markers.sum() == 2 and not layout.visual_mask[markers].any()
    assert layout.text_mask[markers].all()


def test_two_images_in_prompt_order(tiny):
    prepared = tiny.adapter.prepare(tiny, [_image(90, 40), _image(32, 32, 1)], QUESTION)
    assert [(grid.name, grid.image_index) for grid in prepared.facts.grids] == [
        ("image 0, 1x2 tiles", 0),
        ("image 0, thumbnail", 0),
        ("image 1", 1),
    ]


def test_perturbed_pixels_are_tiled_as_a_full_prepare_tiles_them(tiny):
    prepared = tiny.adapter.prepare(tiny, [_image(90, 40)], QUESTION)
    other = _image(90, 40, 7)
    perturbed = tiny.adapter.prepare_perturbed(tiny, prepared, [other])
    full = tiny.adapter.prepare(tiny, [other], QUESTION)
    assert torch.equal(perturbed.inputs["pixel_values"], full.inputs["pixel_values"])


# --- the one pass equals the definition --------------------------------------------------

CASES = {
    "one view": lambda: [_image(32, 32)],
    "tall": lambda: [_image(40, 90)],
    "two images": lambda: [_image(150, 50), _image(60, 60, 1)],
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_pass_matches_the_definition(tiny, case):
    assert one_pass_error(tiny, CASES[case](), QUESTION, "red circle") <= TOLERANCE


# --- explain() and the CLI on a saved checkpoint -------------------------------------------


def test_explain_free_run_given_answer_and_a_large_image(tiny_dir):
    loaded = load(str(tiny_dir))
    assert isinstance(loaded.adapter, InternVLAdapter)
    image = Image.open(tiny_dir / "image.png")
    free = explain(loaded, image, QUESTION, max_new_tokens=3)
    assert free.generated and 1 <= len(free.token_ids) <= 3
    assert [grid.shape for grid in free.grids] == [(2, 4), (2, 2)]
    for grid in range(2):
        tokens, sequence = free.upsample(grid)
        assert sequence.shape == (40, 90) and np.isfinite(tokens).all()
    given = explain(loaded, _image(1280, 720, 3), QUESTION, answer="a red circle")
    assert given.tokens == ("a", "red", "circle") and not given.generated
    assert [grid.name for grid in given.grids] == ["image 0, 2x4 tiles", "image 0, thumbnail"]


def test_dexar_explain_on_the_saved_checkpoint(tiny_dir, tmp_path, capsys):
    args = ["explain", "--model", str(tiny_dir), "--image", str(tiny_dir / "image.png")]
    args += ["--prompt", QUESTION, "--answer", "red circle", "--out", str(tmp_path)]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    saved = json.loads((tmp_path / "explanation.json").read_text())
    assert saved["adapter"] == "internvl"
    assert [grid["name"] for grid in saved["grids"]] == ["image 0, 1x2 tiles", "image 0, thumbnail"]


# --- refusals -----------------------------------------------------------------------------


def test_a_video_is_refused_naming_what_is_missing(tiny):
    frames = [np.zeros((32, 32, 3), dtype=np.uint8)] * 2
    with pytest.raises(UnsupportedModelError, match=r"InternVL's video input .* not supported"):
        tiny.adapter.prepare(tiny, [Video(frames=frames)], QUESTION)


def test_a_block_at_odds_with_the_tiling_is_refused(tiny):
    image = _image(90, 40)
    text = tiny.adapter.format_prompt(tiny, QUESTION, 1)
    inputs = tiny.processor(text=text, images=[image], return_tensors="pt")
    tiny.processor.image_processor.max_patches = 1  # as a processor saved with other settings
    try:
        with pytest.raises(InputError, match="block holds 12 image tokens but its 1x1 tiles"):
            tiny.adapter.image_tokens.image_facts(tiny, inputs, [image])
    finally:
        tiny.processor.image_processor.max_patches = 12
