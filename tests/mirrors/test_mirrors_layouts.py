"""Published layouts transformers 5 misreads are mended; a format dexar cannot read is named.

Each case is a mirror written in an older published form. A mended one must explain
exactly as the current form does (same weights, same maps) and say what it filled in;
one that cannot be mended, or read, fails at once with exit 2 and the fix.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
from mirrors import FIXTURES, build_mirror
from PIL import Image

from dexar_core.api import explain, load
from dexar_core.cli.main import main
from dexar_core.errors import CheckpointError

PROMPT = "what is in the image?"
ANSWER = "a red circle"
IMAGE = Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 160, 3), dtype=np.uint8))


def without(filename: str, *keys: str):
    def edit(fixture):
        for key in keys:
            del fixture["files"][filename][key]

    return edit


def no_processor_config(fixture):
    del fixture["files"]["processor_config.json"]


def dropped_qwen25_image_processor(fixture):
    fixture["files"]["preprocessor_config.json"]["image_processor_type"] = (
        "Qwen2_5_VLImageProcessor"
    )


def blip2_before_2024(fixture):
    """No image token anywhere: config, processor config and tokenizer as before 2024."""
    del fixture["files"]["config.json"]["image_token_index"]
    del fixture["files"]["processor_config.json"]["num_query_tokens"]
    del fixture["tokenizer"]["special_tokens"]["<image>"]


MENDED = {
    "llava without patch_size": (
        "llava-1.5-7b-hf",
        without("processor_config.json", "patch_size"),
        "no patch_size; took 14",
    ),
    "llava without num_additional_image_tokens": (
        "llava-1.5-7b-hf",
        without("processor_config.json", "num_additional_image_tokens"),
        "no num_additional_image_tokens; took 1 from the clip_vision_model tower",
    ),
    "llava without processor_config.json": (
        "llava-1.5-7b-hf",
        no_processor_config,
        "no vision_feature_select_strategy",
    ),
    "qwen2.5-vl naming Qwen2_5_VLImageProcessor": (
        "qwen2.5-vl-3b-instruct",
        dropped_qwen25_image_processor,
        "reading it as Qwen2VLImageProcessor",
    ),
    "blip2-opt before 2024": ("blip2-opt-2.7b", blip2_before_2024, "'<image>' = 50265"),
    "blip2-flan-t5 before 2024": ("blip2-flan-t5-xl", blip2_before_2024, "'<image>' = 32100"),
}


@pytest.mark.parametrize("case", sorted(MENDED))
def test_mended_layout_explains_as_the_published_one(case, loaded_mirror, tmp_path, caplog):
    name, edit, note = MENDED[case]
    folder = build_mirror(name, tmp_path / "old", edit=edit)
    with caplog.at_level(logging.INFO, logger="dexar"):
        mended = load(str(folder), dtype="float32")
    assert note in caplog.text
    expected = explain(loaded_mirror(name), IMAGE, PROMPT, answer=ANSWER)
    found = explain(mended, IMAGE, PROMPT, answer=ANSWER)
    assert [grid.shape for grid in found.grids] == [grid.shape for grid in expected.grids]
    for mine, theirs in zip(found.token_maps, expected.token_maps, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6 * float(np.abs(theirs).max()))


def test_blip2_image_token_outside_the_vocabulary_is_refused(tmp_path):
    def too_small(fixture):
        blip2_before_2024(fixture)
        # the tokenizer's '<image>' lands at 50265, past an OPT table of 50265 rows
        fixture["files"]["config.json"]["text_config"]["vocab_size"] = 50265

    folder = build_mirror("blip2-opt-2.7b", tmp_path / "old", edit=too_small)
    with pytest.raises(CheckpointError, match=r"no image_token_index .* outside the language"):
        load(str(folder), dtype="float32")


def test_remote_code_florence2_fails_at_once_naming_the_conversion(tmp_path, capsys):
    fixture = json.loads((FIXTURES / "remote_code" / "florence-2-base.json").read_text())
    for filename, content in fixture["files"].items():
        (tmp_path / filename).write_text(json.dumps(content))
    image = tmp_path / "frame.png"
    IMAGE.save(image)
    start = time.perf_counter()
    code = main(["explain", "--model", str(tmp_path), "--image", str(image), "--prompt", "<OD>"])
    elapsed = time.perf_counter() - start
    message = capsys.readouterr().err
    assert code == 2, message
    assert "remote-code format" in message
    assert "florence-community/Florence-2-base" in message
    assert "convert_florence2_original_pytorch_to_hf.py" in message
    assert elapsed < 10, f"took {elapsed:.1f} s to refuse"
