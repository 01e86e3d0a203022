"""``dexar explain`` writes the pictures and arrays and reports bad input cleanly."""

from __future__ import annotations

import json

from command_errors import command_error
from llava_fixtures import explain_argv

from dexar_core.cli.key_values import parse_option
from dexar_core.cli.main import main


def test_explain_writes_overlays_and_the_explanation(tiny_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(explain_argv(tiny_dir, out, "--option", "head_agg=mean"))
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
    missing = str(tmp_path / "missing.png")
    args = ["explain", "--model", str(tiny_dir), "--image", missing, "--prompt", "what"]
    err = command_error(capsys, *args, "--out", str(tmp_path))
    assert "dexar: error:" in err and "does not exist" in err


def test_options_parse_to_python_values():
    assert parse_option("layers=3") == ("layers", 3)
    assert parse_option("layers=0,2") == ("layers", [0, 2])
    assert parse_option("normalize-tokens=true") == ("normalize_tokens", True)
    assert parse_option("text_set=prompt_only") == ("text_set", "prompt_only")
