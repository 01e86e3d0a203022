"""``dexar explain`` on a contrastive model: several prompts, similarities, no answer."""

from __future__ import annotations

import json

import pytest

from dexar_core.cli.main import main

PROMPTS = ["a red circle", "a blue square", "a green triangle"]


def record_weights(folder):
    from dexar_core.explanation import Explanation

    return [float(weight) for weight in Explanation.load(folder / "explanation").token_weights]


@pytest.mark.parametrize("method", ["dexar", "legrad"])
def test_several_prompts_give_one_map_each_and_their_similarities(method, tmp_path, capsys):
    args = ["explain", "--model", "shapes-clip", "--method", method, "--out", str(tmp_path)]
    code = main([*args, *(item for prompt in PROMPTS for item in ("--prompt", prompt))])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads((tmp_path / "explanation.json").read_text())
    assert record["tokens"] == PROMPTS and record["units"] == "prompts"
    assert record["answer"] == ""
    lines = captured.out.splitlines()
    assert lines[0] == f"image-text similarity (cosine) of shapes-clip, method {method}:"
    for prompt, similarity in zip(PROMPTS, record["metadata"]["similarities"], strict=True):
        row = next(line for line in lines if line.strip().startswith(repr(prompt)))
        assert f"{similarity:.4f}" in row
    assert "answer" not in captured.out and "delta" not in captured.out
    assert "token" not in captured.out
    assert ("combined-map weight" in captured.out) == (method == "dexar")
    if method == "dexar":  # the weights printed are DEX-AR's delta per prompt, not similarities
        for prompt, weight in zip(PROMPTS, record_weights(tmp_path), strict=True):
            row = next(line for line in lines if line.strip().startswith(repr(prompt)))
            assert row.split()[-1] == f"{weight:.4g}"
    for name in ("combined.png", "prompts.png", "explanation.npz"):
        assert (tmp_path / name).is_file()
    assert not (tmp_path / "tokens.png").exists()


def test_the_example_prompt_is_used_when_none_is_given(tmp_path, capsys):
    code = main(["explain", "--model", "shapes-clip", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "'a red circle'" in captured.out
    assert json.loads((tmp_path / "explanation.json").read_text())["tokens"] == ["a red circle"]


def test_several_prompts_for_a_generative_model_are_a_clear_error(tmp_path, capsys):
    args = ["explain", "--model", "shapes-llava", "--out", str(tmp_path)]
    code = main([*args, "--prompt", "what color is the circle?", "--prompt", "describe the image"])
    err = capsys.readouterr().err
    assert code == 2
    assert "dexar: error: 'shapes-llava' is a generative model" in err
    assert "got 2 --prompt values" in err and "Traceback" not in err
    assert not (tmp_path / "explanation.json").exists()
