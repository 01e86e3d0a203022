"""The mistakes of issue 20's second wave on the command line: exit 2, one line, or a warning."""

from __future__ import annotations

import pytest
from command_errors import command_error, refuse_model_loads

import dexar_core.api
from dexar_core.cli import main as cli
from dexar_core.compare.on_image import example_inputs
from dexar_core.errors import InputError


@pytest.fixture
def no_model_load(monkeypatch):
    refuse_model_loads(monkeypatch)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--prompt", ""], "dexar: error: --prompt '' is blank"),
        (["--prompt", " \t"], "is blank; give a question or instruction"),
        (["--prompt", "what?", "--answer", " "], "leave out --answer to have the model"),
    ],
)
def test_blank_texts_are_refused_before_the_load(no_model_load, capsys, arguments, message):
    err = command_error(capsys, "explain", *arguments)
    assert message in err and "None" not in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "--models", "shapes-llava", "--image", "a.png", "--image", "b.png"],
        ["compare", "--models", "a", "--models", "b"],
        ["explain", "--model", "a", "--model", "b"],
        ["explain", "--answer", "a", "--answer", "b"],
    ],
)
def test_a_single_value_flag_given_twice_is_refused(no_model_load, capsys, argv):
    flag = argv[3] if argv[0] == "compare" and argv[3] == "--image" else argv[1]
    err = command_error(capsys, *argv)
    assert f"{flag} is given twice" in err, err


def test_an_open_clip_folder_without_its_prefix_exits_2_naming_the_prefix(capsys, tmp_path):
    from dexar_plugins import default_catalog

    folder = default_catalog().embedded_model("shapes-clip").path
    image, _ = example_inputs("shapes-clip")
    err = command_error(
        capsys, "explain", "--model", str(folder), "--image", str(image), "--prompt", "a circle",
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert f"give it as open_clip:{folder}" in err, err


def test_a_prompt_past_the_context_exits_2_naming_the_limit(capsys, tmp_path):
    err = command_error(
        capsys, "explain", "--model", "shapes-llava", "--prompt", " ".join(["red"] * 3000),
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    last = err.splitlines()[-1]
    assert last.startswith("dexar: error: the prompt takes"), err
    assert "reads at most 256 positions" in last, err


def test_mostly_unknown_tokens_print_a_warning_and_still_explain(capsys, tmp_path):
    code = cli.main(
        ["explain", "--model", "shapes-llava", "--prompt", "猫 ñandú 🙂", "--answer", "red",
         "--out", str(tmp_path / "o"), "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "dexar: warning: 100% of the prompt's" in err, err
    assert (tmp_path / "o" / "explanation.json").is_file()


def test_explanation_save_to_a_bad_path_is_an_input_error(tmp_path):
    image, prompt = example_inputs("shapes-llava")
    explanation = dexar_core.api.explain(
        dexar_core.api.load("shapes-llava"), image, prompt, "red", max_new_tokens=2
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"Explanation\.save: could not write"):
        explanation.save(blocker / "explanation")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(InputError, match="give a path in a folder you can write to"):
        explanation.save(tmp_path / "dir")
