"""load() and explain() end to end on a saved tiny LLaVA, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
from llava_fixtures import noise_image
from PIL import Image

from dexar_core import errors
from dexar_core.api import explain, load
from dexar_core.explanation import Explanation


@pytest.fixture(scope="module")
def explanation(loaded):
    return explain(loaded, noise_image(1), "what color is the circle?", max_new_tokens=4)


def test_explain_free_run_gives_one_map_per_token_on_the_patch_grid(explanation):
    tokens = len(explanation.token_ids)
    assert 1 <= tokens <= 4
    assert explanation.generated
    assert explanation.adapter == "llava"
    assert explanation.token_map_stack.shape == (tokens, 8, 8)
    assert explanation.sequence_map.shape == (8, 8)
    assert explanation.head_weights.shape == (tokens, 2, 4)
    assert explanation.layers == (0, 1)
    assert explanation.grids[0].pixel_box == (0.0, 0.0, 64.0, 64.0)
    token_maps, sequence = explanation.upsample()
    assert token_maps.shape == (tokens, 64, 64) and sequence.shape == (64, 64)


def test_teacher_forced_answer_is_explained_as_given(loaded):
    result = explain(loaded, noise_image(2), "describe the image", answer="a red circle")
    assert result.answer == "a red circle"
    assert result.tokens == ("a", "red", "circle")
    assert not result.generated


def test_save_and_load_round_trip_exactly(explanation, tmp_path):
    sidecar = explanation.save(tmp_path / "explanation")
    assert sidecar.suffix == ".json" and sidecar.with_suffix(".npz").is_file()
    assert Explanation.load(sidecar) == explanation


def test_the_units_are_answer_tokens_and_old_files_load_as_such(explanation, tmp_path):
    import json

    import attrs

    assert explanation.units == "answer tokens"
    sidecar = explanation.save(tmp_path / "old")
    record = json.loads(sidecar.read_text())
    assert record["units"] == "answer tokens"
    del record["units"]  # a file written before the field existed
    sidecar.write_text(json.dumps(record))
    assert Explanation.load(sidecar) == explanation
    with pytest.raises(ValueError, match="units"):
        attrs.evolve(explanation, units="words")


def test_last_k_and_explicit_layers(loaded):
    last = explain(loaded, noise_image(3), "what", answer="red", layers=1)
    assert last.layers == (1,) and last.head_weights.shape[1] == 1
    explicit = explain(loaded, noise_image(3), "what", answer="red", layers=[-2])
    assert explicit.layers == (0,)


@pytest.mark.parametrize(
    "mode", ["RGBA", "L", "I;16", "P"], ids=["rgba", "grayscale", "16-bit", "palette"]
)
def test_unusual_image_modes_are_converted(loaded, mode, tmp_path):
    if mode == "I;16":
        pixels = np.random.default_rng(0).integers(0, 65535, (40, 50), dtype=np.uint16)
        picture = Image.fromarray(pixels)
        assert picture.mode.startswith("I;16")
    else:
        picture = noise_image(4, (50, 40)).convert(mode)
    path = tmp_path / f"image-{mode.replace(';', '')}.png"
    picture.save(path)
    result = explain(loaded, path, "what", answer="red")
    assert result.image_sizes == ((50, 40),)
    assert np.isfinite(result.sequence_map).all()


def test_very_large_image_is_resized_by_the_processor(loaded):
    result = explain(loaded, noise_image(5, (3000, 2000)), "what", answer="red")
    assert result.sequence_map.shape == (8, 8)
    assert result.grids[0].pixel_box == (0.0, 0.0, 3000.0, 2000.0)


def test_missing_unreadable_and_non_image_files(loaded, tmp_path):
    with pytest.raises(errors.ImageError, match="does not exist"):
        explain(loaded, tmp_path / "nope.png", "what", answer="red")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(errors.ImageError, match="could not be read as an image"):
        explain(loaded, text, "what", answer="red")
    with pytest.raises(errors.ImageError, match="is not a file"):
        explain(loaded, tmp_path, "what", answer="red")


def test_bad_prompts_answers_and_options(loaded):
    image = noise_image(6)
    with pytest.raises(errors.InputError, match="one image placeholder per image"):
        explain(loaded, image, "USER: <image><image>\nwhat ASSISTANT:", answer="red")
    with pytest.raises(errors.InputError, match="at least one image"):
        explain(loaded, [], "what", answer="red")
    with pytest.raises(errors.InputError, match="is blank"):
        explain(loaded, image, "what", answer="  ")
    with pytest.raises(errors.InputError, match="max_new_tokens"):
        explain(loaded, image, "what", max_new_tokens=0)
    with pytest.raises(errors.MethodError, match="out of range"):
        explain(loaded, image, "what", answer="red", layers=[5])
    with pytest.raises(errors.MethodError, match="last 3 layers"):
        explain(loaded, image, "what", answer="red", layers=3)
    with pytest.raises(errors.InputError, match=r"No method named 'gradcam'"):
        explain(loaded, image, "what", answer="red", method="gradcam")
    with pytest.raises(errors.MethodError, match="head_agg"):
        explain(loaded, image, "what", answer="red", head_agg="median")


def test_a_text_only_model_has_no_adapter(loaded, tmp_path):
    from transformers import LlamaForCausalLM

    # the tiny LLaVA's own language model, saved alone: a Llama checkpoint
    LlamaForCausalLM(loaded.model.config.text_config).save_pretrained(tmp_path)
    with pytest.raises(errors.UnsupportedModelError, match="llava"):
        load(str(tmp_path))


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(errors.CheckpointError, match=r"config\.json"):
        load(str(tmp_path))
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(errors.CheckpointError):
        load(str(tmp_path))
    with pytest.raises(errors.CheckpointError):
        load(str(tmp_path / "does-not-exist"))


def test_corrupt_weights_are_a_checkpoint_error(tiny_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(errors.CheckpointError, match="intact weights"):
        load(str(broken))
