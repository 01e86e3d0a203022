"""``--adapter-option``: an adapter's own options from the command line, refused by name."""

from __future__ import annotations

import json

import numpy as np
from command_errors import command_error

from dexar_core.cli.main import main


def test_explain_builds_the_adapter_with_the_option_and_records_it(tmp_path, capsys):
    routed, plain = tmp_path / "routed", tmp_path / "plain"
    arguments = ["explain", "--example", "--model", "shapes-florence2", "--quiet"]
    assert (
        main([*arguments, "--adapter-option", "through_encoder=rollout", "--out", str(routed)]) == 0
    )
    assert main([*arguments, "--out", str(plain)]) == 0, capsys.readouterr().err
    record = json.loads((routed / "explanation.json").read_text())
    assert record["metadata"]["adapter_options"] == {"through_encoder": "rollout"}
    assert "adapter_options" not in json.loads((plain / "explanation.json").read_text())["metadata"]
    # the route changes the maps: relevance now reaches the patches through the encoder
    with np.load(routed / "explanation.npz") as a, np.load(plain / "explanation.npz") as b:
        assert not np.allclose(a["raw_sequence_map_0"], b["raw_sequence_map_0"])


def test_evaluate_records_the_option_and_a_resume_without_it_is_refused(tmp_path, capsys):
    out = tmp_path / "eval"
    arguments = ["evaluate", "--model", "shapes-florence2", "--methods", "attention"]
    arguments += ["--limit", "2", "--resamples", "20", "--out", str(out)]
    assert main([*arguments, "--adapter-option", "through_encoder=rollout"]) == 0
    assert json.loads((out / "attention" / "run.json").read_text())["adapter_options"] == {
        "through_encoder": "rollout"
    }
    capsys.readouterr()
    err = command_error(capsys, *arguments)
    assert "adapter_options" in err


def test_an_option_the_adapter_does_not_take_exits_2_naming_those_it_does(tmp_path, capsys):
    arguments = ["explain", "--example", "--model", "shapes-blip2", "--out", str(tmp_path)]
    err = command_error(capsys, *arguments, "--adapter-option", "through_encoder=rollout")
    assert "the blip2 adapter takes the adapter option(s) ['projection']" in err


def test_a_bad_value_exits_2_with_the_adapters_own_message(tmp_path, capsys):
    arguments = ["explain", "--example", "--model", "shapes-florence2", "--out", str(tmp_path)]
    err = command_error(capsys, *arguments, "--adapter-option", "through_encoder=sideways")
    assert "through_encoder must be one of" in err


def test_an_option_without_a_value_names_the_flag(tmp_path, capsys):
    arguments = ["explain", "--example", "--model", "shapes-florence2", "--out", str(tmp_path)]
    err = command_error(capsys, *arguments, "--adapter-option", "through_encoder")
    assert "--adapter-option expects key=value, got 'through_encoder'" in err
    err = command_error(
        capsys,
        *arguments,
        "--adapter-option",
        "projection=mean",
        "--adapter-option",
        "projection=gradient",
    )
    assert "--adapter-option projection is given twice" in err
