"""``dexar explain`` writes the pictures and arrays and reports bad input cleanly."""

from __future__ import annotations

import json

import pytest
from llava_fixtures import noise_image

from dexar_core.cli.explain import parse_option
from dexar_core.cli.main import main
from dexar_llava.tiny import build_tiny_llava


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    model, processor = build_tiny_llava(seed=0)
    folder = tmp_path_factory.mktemp("cli-llava")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    noise_image(1).save(folder / "image.png")
    return folder


def test_explain_writes_overlays_and_the_explanation(tiny_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            "--model",
            str(tiny_dir),
            "--image",
            str(tiny_dir / "image.png"),
            "--prompt",
            "what color is the circle?",
            "--answer",
            "red circle",
            "--out",
            str(out),
            "--option",
            "head_agg=mean",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "answer: red circle" in captured.out
    assert "'red'" in captured.out and "'circle'" in captured.out
    for name in ("sequence.png", "tokens.png", "explanation.npz", "explanation.json"):
        assert (out / name).is_file()
    record = json.loads((out / "explanation.json").read_text())
    assert record["options"]["head_agg"] == "mean"
    assert "explain" in captured.err  # progress goes to stderr


def test_bad_input_is_a_one_line_error_not_a_traceback(tiny_dir, tmp_path, capsys):
    code = main(
        [
            "explain",
            "--model",
            str(tiny_dir),
            "--image",
            str(tmp_path / "missing.png"),
            "--prompt",
            "what",
            "--out",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "dexar: error:" in err and "does not exist" in err
    assert "Traceback" not in err


def test_options_parse_to_python_values():
    assert parse_option("layers=3") == ("layers", 3)
    assert parse_option("layers=0,2") == ("layers", [0, 2])
    assert parse_option("normalize-tokens=true") == ("normalize_tokens", True)
    assert parse_option("text_set=prompt_only") == ("text_set", "prompt_only")
