"""Mistral 3 end to end: the one-pass engine against the definition on native-resolution
grids, the row-end tokens in neither V nor T_set, perturbed inputs as the processor makes
them, and explain() and the CLI on a saved tiny checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dexar_core.api import explain, load
from dexar_core.cli.main import main
from dexar_core.engine import attention_gradients
from dexar_core.errors import InputError
from dexar_core.records import LoadedModel
from dexar_mistral3.adapter import Mistral3Adapter
from dexar_mistral3.tiny import build_tiny_mistral3
from dexar_plugins.testing.reference import naive_attention_gradients, relative_error

QUESTION = "what color is the circle?"
TOLERANCE = 1e-5


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    torch.set_num_threads(2)
    model, processor = build_tiny_mistral3(seed=1)
    return LoadedModel(model=model, processor=processor, adapter=Mistral3Adapter(), model_id="t")


CASES = {
    "square": [(56, 56)],
    "wide": [(150, 50)],
    "large, scaled down": [(900, 500)],
    "two images": [(90, 40), (40, 70)],
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


def test_grids_follow_the_native_resolution_and_row_ends_are_neither_set(tiny):
    prepared = tiny.adapter.prepare(tiny, [_image(150, 50), _image(40, 70, 1)], QUESTION)
    layout = tiny.adapter.locator.locate(prepared)
    # 150 x 50 fits longest_edge 112 as 112 x 37, rounded up to whole 28 px cells: 2 x 4
    # tokens; 40 x 70 (no scaling) rounds up to 3 x 2
    assert [grid.shape for grid in layout.grids] == [(2, 4), (3, 2)]
    assert [grid.pixel_box for grid in layout.grids] == [(0, 0, 150, 50), (0, 0, 40, 70)]
    ids = prepared.inputs["input_ids"][0].numpy()
    tokenizer = tiny.tokenizer
    image, row_break, row_end = (
        tokenizer.convert_tokens_to_ids(token) for token in ("[IMG]", "[IMG_BREAK]", "[IMG_END]")
    )
    assert np.array_equal(layout.visual_mask, ids == image)
    separators = np.isin(ids, [row_break, row_end])
    assert separators.sum() == 2 + 3
    assert not (layout.visual_mask | layout.text_mask)[separators].any()
    # everything else the answer sees is text: <s>, [INST], the prompt, [/INST]
    assert layout.text_mask.sum() == ids.size - (ids == image).sum() - separators.sum()
    assert (ids == tokenizer.bos_token_id).sum() == 1
    # each grid row is the [IMG] run before one row end
    first = layout.grids[0].positions.reshape(2, 4)
    assert ids[first[0, -1] + 1] == row_break and ids[first[1, -1] + 1] == row_end


def test_perturbed_inputs_are_the_processors_own(tiny):
    images = [_image(150, 50), _image(40, 70, 1)]
    prepared = tiny.adapter.prepare(tiny, images, QUESTION)
    others = [_image(150, 50, 7), _image(40, 70, 8)]
    perturbed = tiny.adapter.prepare_perturbed(tiny, prepared, others)
    expected = tiny.adapter.prepare(tiny, others, QUESTION)
    for key in ("pixel_values", "image_sizes", "input_ids"):
        assert torch.equal(perturbed.inputs[key], expected.inputs[key]), key


def test_a_prompt_with_an_image_too_many_is_refused(tiny):
    with pytest.raises(InputError, match=r"\[IMG\]"):
        tiny.adapter.prepare(tiny, [_image(56, 56)], "[INST][IMG][IMG]what[/INST]")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-mistral3")
    model, processor = build_tiny_mistral3(seed=2)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    _image(90, 40, 5).save(folder / "image.png")
    return folder


def test_explain_free_run_and_given_answer_on_a_saved_checkpoint(tiny_dir):
    loaded = load(str(tiny_dir))
    assert isinstance(loaded.adapter, Mistral3Adapter)
    image = Image.open(tiny_dir / "image.png")
    free = explain(loaded, image, QUESTION, max_new_tokens=3)
    assert free.generated and 1 <= len(free.token_ids) <= 3
    tokens, sequence = free.upsample(0)
    assert sequence.shape == (40, 90) and np.isfinite(tokens).all()
    given = explain(loaded, [image, _image(40, 70)], QUESTION, answer="a red circle")
    assert given.tokens == ("a", "red", "circle") and not given.generated
    assert [grid.shape for grid in given.grids] == [(2, 4), (3, 2)]


def test_dexar_explain_on_the_saved_checkpoint(tiny_dir, tmp_path, capsys):
    args = ["explain", "--model", str(tiny_dir), "--image", str(tiny_dir / "image.png")]
    args += ["--prompt", QUESTION, "--answer", "red circle", "--out", str(tmp_path)]
    code = main(args)
    assert code == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "explanation.json").read_text())
    assert saved["adapter"] == "mistral3"
    assert [grid["name"] for grid in saved["grids"]] == ["image 0"]
