"""``dexar explain --example --model M`` works for every embedded model, with its own example."""

from __future__ import annotations

import json

import pytest

from dexar_core.cli.main import main
from dexar_plugins import default_catalog

EMBEDDED = sorted(default_catalog().embedded_models)

EXAMPLE_ANSWERS = {
    "shapes-blip2": "purple",
    "shapes-florence2": "a blue circle at the left",
    "shapes-llava": "a red circle at the top right and a green triangle at the bottom left",
    "shapes-qwen2vl": "a purple circle at the top left and a green square at the top right",
}
"""What each generative model answers on its example: the example image's true answer."""

NO_EXAMPLE_PLUGIN = """
    from dexar_core.values import EmbeddedModelSpec
    from dexar_plugins import hookimpl

    @hookimpl
    def dexar_embedded_models():
        yield EmbeddedModelSpec(name="shapes-fake", path="ckpt", adapter="fake-vlm")
"""


def test_every_embedded_model_ships_an_example_image_and_prompt():
    for name in EMBEDDED:
        spec = default_catalog().embedded_model(name)
        assert spec.example_image is not None and spec.example_image.is_file(), name
        assert spec.example_prompt, name


@pytest.mark.parametrize("name", EMBEDDED)
def test_the_example_of_every_embedded_model_is_explained(name, tmp_path, capsys):
    spec = default_catalog().embedded_model(name)
    code = main(["explain", "--example", "--model", name, "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads((tmp_path / "explanation.json").read_text())
    assert record["prompt"] == spec.example_prompt
    assert (tmp_path / "explanation.npz").is_file()
    if name in EXAMPLE_ANSWERS:
        assert record["answer"] == EXAMPLE_ANSWERS[name]
    else:  # a contrastive model: the example prompt is a caption, one map for it
        assert record["tokens"] == [spec.example_prompt]
        assert len(record["metadata"]["similarities"]) == 1


def test_an_embedded_model_without_an_example_is_a_clear_error(fake_site, tmp_path, capsys):
    fake_site.add_plugin("extras", NO_EXAMPLE_PLUGIN, distribution="dexar-extras")
    code = main(["explain", "--example", "--model", "shapes-fake", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "'shapes-fake' ships no example image and prompt" in err
    assert "Traceback" not in err
