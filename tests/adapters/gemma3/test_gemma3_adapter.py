"""Gemma 3 end to end: the one-pass engine against the definition (sliding windows shorter
than the prompt, several images, pan-and-scan crops), where each crop's grid lies, which
keys are visual, and explain() and the CLI on a saved tiny checkpoint."""

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
from dexar_core.errors import InputError
from dexar_core.records import LoadedModel
from dexar_gemma3.adapter import Gemma3Adapter, pan_and_scan_crops, pan_and_scan_settings
from dexar_gemma3.tiny import build_tiny_gemma3
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _pan_and_scan(loaded: LoadedModel, on: bool) -> None:
    image_processor = loaded.processor.image_processor
    image_processor.do_pan_and_scan = on
    image_processor.pan_and_scan_min_crop_size = 24 if on else None


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    torch.set_num_threads(2)
    # a window of 8 keys, far shorter than any prompt here: the sliding layers' rows see
    # only the last keys, the global layers' all of them
    model, processor = build_tiny_gemma3(seed=1, sliding_window=8)
    return LoadedModel(model=model, processor=processor, adapter=Gemma3Adapter(), model_id="t")


@pytest.fixture
def scanned(tiny):
    _pan_and_scan(tiny, True)
    yield tiny
    _pan_and_scan(tiny, False)


# --- the one pass equals the definition ----------------------------------------------------

CASES = {
    "square": (lambda: [_image(56, 56)], False),
    "wide": (lambda: [_image(150, 50)], False),
    "two images": (lambda: [_image(90, 40), _image(40, 70, 1)], False),
    "pan-and-scan, three crops": (lambda: [_image(150, 50)], True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_pass_matches_the_definition(tiny, case):
    images, scan = CASES[case]
    _pan_and_scan(tiny, scan)
    try:
        adapter = tiny.adapter
        prepared = adapter.prepare(tiny, images(), QUESTION)
        layout = adapter.locator.locate(prepared)
        answer_ids = adapter.encode_answer(tiny, prepared, "red circle")
        forced = adapter.teacher_forced(tiny, prepared, answer_ids)
        record = attention_gradients(tiny, forced, layout.with_length(forced.key_length), [0, 1])
        reference = naive_attention_gradients(tiny, prepared, answer_ids, [0, 1])
    finally:
        _pan_and_scan(tiny, False)
    assert record.gradients[..., record.layout.visual_mask].max() > 0
    assert relative_error(record.gradients, reference) <= TOLERANCE


# --- which keys are visual -----------------------------------------------------------------


def test_image_markers_are_text_and_soft_tokens_are_visual(tiny):
    prepared = tiny.adapter.prepare(tiny, [_image(90, 40)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    ids = prepared.inputs["input_ids"][0].numpy()
    tokenizer = tiny.tokenizer
    soft = ids == tiny.model.config.image_token_id
    assert np.array_equal(layout.visual_mask, soft) and soft.sum() == 16
    for marker in (tokenizer.boi_token_id, tokenizer.eoi_token_id):
        (position,) = np.flatnonzero(ids == marker)
        assert layout.text_mask[position] and not layout.visual_mask[position]
    # one <bos>: the chat template writes it, the tokenizer adds no second one
    assert (ids == tokenizer.bos_token_id).sum() == 1


def test_answer_tokens_are_text_in_the_bidirectional_mask(tiny):
    prepared = tiny.adapter.prepare(tiny, [_image(56, 56)], QUESTION)
    forced = tiny.adapter.teacher_forced(tiny, prepared, [5, 6, 7])
    types = forced.inputs["token_type_ids"][0]
    assert types.shape[0] == forced.key_length and not types[-3:].any()
    # without the token types the image block is causal and the logits change: the
    # model's own two-way image attention is what the explanation runs
    with torch.no_grad():
        kept = tiny.model(**forced.inputs).logits
        inputs = {key: value for key, value in forced.inputs.items() if key != "token_type_ids"}
        dropped = tiny.model(**inputs).logits
    assert not torch.allclose(kept, dropped, atol=1e-6)


# --- pan-and-scan crops ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [(250, 60), (60, 250), (130, 100), (100, 100), (700, 40)])
def test_crop_boxes_are_transformers_own_crops(size):
    from transformers import Gemma3ImageProcessorPil

    settings = {
        "do_pan_and_scan": True,
        "pan_and_scan_min_crop_size": 20,
        "pan_and_scan_max_num_crops": 4,
        "pan_and_scan_min_ratio_to_activate": 1.2,
    }
    width, height = size
    index = np.arange(width * height).reshape(1, height, width)
    crops = Gemma3ImageProcessorPil().pan_and_scan(
        index, **{key: value for key, value in settings.items() if key != "do_pan_and_scan"}
    )
    expected = [
        (c[0, 0, 0] % width, c[0, 0, 0] // width, c[0, 0, -1] % width + 1, c[0, -1, 0] // width + 1)
        for c in crops
    ]
    assert [tuple(int(v) for v in box) for box in pan_and_scan_crops(size, settings)] == expected


def test_pan_and_scan_gives_a_grid_per_crop_where_it_came_from(scanned):
    prepared = scanned.adapter.prepare(scanned, [_image(150, 50)], QUESTION)
    grids = prepared.facts.grids
    assert [grid.name for grid in grids] == ["image 0", *[f"image 0, crop {k}" for k in range(3)]]
    assert [grid.pixel_box for grid in grids] == [
        (0.0, 0.0, 150.0, 50.0),
        (0.0, 0.0, 50.0, 50.0),
        (50.0, 0.0, 100.0, 50.0),
        (100.0, 0.0, 150.0, 50.0),
    ]
    assert pan_and_scan_settings(scanned.processor)["do_pan_and_scan"]


@pytest.mark.parametrize("spot", [(20, 25), (75, 12), (130, 38)])
def test_a_painted_spot_is_found_in_its_crop_at_its_place(scanned, spot):
    assert_spot_found_in_each_grid(scanned, (150, 50), spot, side=12)


def test_a_prompt_with_a_marker_too_many_is_refused(tiny):
    prompt = "<start_of_image><start_of_image>" + QUESTION
    with pytest.raises(InputError, match="<start_of_image>"):
        tiny.adapter.prepare(tiny, [_image(56, 56)], prompt)


# --- explain() and the CLI on a saved checkpoint -------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gemma3")
    model, processor = build_tiny_gemma3(seed=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    _image(90, 40, 5).save(folder / "image.png")
    return folder


def test_explain_free_run_and_given_answer_on_a_saved_checkpoint(tiny_dir):
    loaded = load(str(tiny_dir))
    assert isinstance(loaded.adapter, Gemma3Adapter)
    image = Image.open(tiny_dir / "image.png")
    free = explain(loaded, image, QUESTION, max_new_tokens=3)
    assert free.generated and 1 <= len(free.token_ids) <= 3
    tokens, sequence = free.upsample(0)
    assert sequence.shape == (40, 90) and np.isfinite(tokens).all()
    given = explain(loaded, [image, _image(30, 60)], QUESTION, answer="a red circle")
    assert given.tokens == ("a", "red", "circle") and not given.generated
    assert [grid.name for grid in given.grids] == ["image 0", "image 1"]
    assert given.token_maps[1].shape == (3, 4, 4)


def test_dexar_explain_on_a_saved_pan_and_scan_checkpoint(tiny_dir, tmp_path, capsys):
    config = json.loads((tiny_dir / "processor_config.json").read_text())
    scanned = tmp_path / "scanned"
    scanned.mkdir()
    for path in tiny_dir.iterdir():
        (scanned / path.name).write_bytes(path.read_bytes())
    config["image_processor"].update(do_pan_and_scan=True, pan_and_scan_min_crop_size=20)
    (scanned / "processor_config.json").write_text(json.dumps(config))
    args = ["explain", "--model", str(scanned), "--image", str(tiny_dir / "image.png")]
    args += ["--prompt", QUESTION, "--answer", "red circle", "--out", str(tmp_path / "out")]
    code = main(args)
    assert code == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "out" / "explanation.json").read_text())
    assert saved["adapter"] == "gemma3"
    assert [grid["name"] for grid in saved["grids"]] == [
        "image 0",
        "image 0, crop 0",
        "image 0, crop 1",
    ]
