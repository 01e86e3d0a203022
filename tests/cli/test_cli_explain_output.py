"""What ``dexar explain`` leaves and prints: real file names, the report, --json, --quiet."""

from __future__ import annotations

import json

import pytest
from llava_fixtures import explain_argv

from dexar_core.cli.main import main


def _explain(tiny_dir, out, *extra):
    return main(explain_argv(tiny_dir, out, *extra))


def test_explain_prints_every_file_it_wrote_and_what_the_weight_is(tiny_dir, tmp_path, capsys):
    out = tmp_path / "out"

    code = _explain(tiny_dir, out)

    captured = capsys.readouterr()
    assert code == 0, captured.err
    wrote = next(line for line in captured.out.splitlines() if line.startswith("wrote "))
    names = wrote.removeprefix("wrote ").split(", ")
    assert "*" not in wrote
    assert {name.rsplit("/", 1)[-1] for name in names} == {
        "sequence.png",
        "tokens.png",
        "report.html",
        "explanation.npz",
        "explanation.json",
    }
    assert all((out / name.rsplit("/", 1)[-1]).is_file() for name in names)
    printed = " ".join(captured.out.split())  # the sentence is wrapped
    assert "strongest gradient goes to the image" in printed
    assert "docs/results.md" in printed
    assert "Loading weights" not in captured.err


def test_json_prints_the_summary_and_the_files(tiny_dir, tmp_path, capsys):
    code = _explain(tiny_dir, tmp_path, "--json", "--no-html")

    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["answer"] == "red circle"
    assert summary["tokens"] == ["red", "circle"]
    assert len(summary["token_weights"]) == 2
    assert summary["weight"] == "token weight (delta)"
    assert not any(name.endswith("report.html") for name in summary["files"])
    assert not (tmp_path / "report.html").exists()


def test_quiet_prints_nothing_and_still_writes(tiny_dir, tmp_path, capsys):
    code = _explain(tiny_dir, tmp_path, "--quiet")

    captured = capsys.readouterr()
    assert code == 0
    assert captured.out == "" and captured.err == ""
    assert (tmp_path / "report.html").is_file() and (tmp_path / "sequence.png").is_file()


@pytest.mark.parametrize(
    ("method", "weighs_by_delta"),
    [
        ("dexar", True),
        ("dexar_weighted", True),
        ("dexar_nohead", True),
        ("dexar_nodelta", False),
        ("attn_grad", False),
    ],
)
def test_the_weight_is_named_delta_for_every_method_that_weighs_by_it(
    tiny_dir, tmp_path, capsys, method, weighs_by_delta
):
    code = _explain(tiny_dir, tmp_path / method, "--method", method, "--json", "--no-html")

    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert (summary["weight"] == "token weight (delta)") is weighs_by_delta, summary["weight"]


def test_the_presets_delta_points_at_the_protocol_not_at_the_papers_poor_separation(
    tiny_dir, tmp_path, capsys
):
    code = _explain(tiny_dir, tmp_path / "out", "--method", "dexar_weighted", "--no-html")

    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = " ".join(captured.out.split())
    assert "section 'Faithfulness protocol (issue 21)'" in printed
    assert "separates object words from function words poorly" not in printed
