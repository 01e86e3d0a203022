"""`dexar plugins`, `dexar models`, `--version` and the CLI's error handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dexar_core
from dexar_core.cli import main as cli
from dexar_core.errors import InputError

DEXAR_SCRIPT = Path(sys.executable).with_name("dexar")

EMBEDDED_MODEL_PLUGIN = """
    from dexar_core.values import EmbeddedModelSpec
    from dexar_plugins import hookimpl

    @hookimpl
    def dexar_embedded_models():
        return [EmbeddedModelSpec(name="shapes-fake", path="/ckpt/fake", adapter="fake-vlm",
                                  description="a fake checkpoint")]
"""


def run_json(capsys, *argv):
    code = cli.main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dexar {dexar_core.__version__}"


def test_plugins_json_lists_nothing_broken_and_exits_0(fake_site, capsys):
    code, rows = run_json(capsys, "plugins")

    assert code == 0
    assert {"dexar.core", "llava"} <= {row["name"] for row in rows if row["kind"] == "plugin"}
    assert {row["status"] for row in rows} == {"ok"}
    assert set(rows[0]) == {"name", "kind", "distribution", "version", "status", "error", "serves"}


# Every built-in family and the model types (config.json's model_type) its adapter serves.
BUILT_IN_FAMILIES = {
    "llava": {"llava"},
    "llava_next": {"llava_next"},
    "llava_onevision": {"llava_onevision"},
    "qwen_vl": {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"},
    "blip2": {"blip-2"},
    "florence2": {"florence2"},
    "open_clip": {"open_clip"},
    "gemma3": {"gemma3"},
    "idefics3": {"idefics3", "smolvlm"},
    "internvl": {"internvl"},
    "mistral3": {"mistral3"},
    "mllama": {"mllama"},
}


def test_plugins_lists_every_family_adapter_and_the_model_types_it_serves(capsys):
    code, rows = run_json(capsys, "plugins")

    assert code == 0
    served = {row["name"]: set(row["serves"]) for row in rows if row["kind"] == "adapter"}
    for adapter, model_types in BUILT_IN_FAMILIES.items():
        assert adapter in served, adapter
        assert model_types <= served[adapter], (adapter, served[adapter])
    assert cli.main(["plugins"]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [
        "idefics3",
        "adapter",
        "dexar",
        dexar_core.__version__,
        "ok",
        "idefics3,smolvlm",
    ] in table


def test_broken_plugin_is_a_failure_row_not_a_crash(fake_site, capsys):
    fake_site.add_plugin("broken", "raise ImportError('needs libfoo')", distribution="dexar-bad")

    code, rows = run_json(capsys, "plugins")

    assert code == 1
    (failed,) = [row for row in rows if row["status"] == "failed"]
    assert failed == {
        "name": "broken",
        "kind": "plugin",
        "distribution": "dexar-bad",
        "version": "1.0",
        "status": "failed",
        "error": "ImportError: needs libfoo",
        "serves": [],
    }


def test_plugins_table_shows_failures_and_conflicts(fake_site, capsys):
    fake_site.add_plugin("broken", "raise ImportError('needs libfoo')", distribution="dexar-bad")
    fake_site.add_adapter_plugin("one", adapter="twin", distribution="dexar-one")
    fake_site.add_adapter_plugin("two", adapter="twin", distribution="dexar-two")

    code = cli.main(["plugins"])

    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS", "SERVES"]
    listed = [line.split()[:5] for line in lines]
    assert ["broken", "plugin", "dexar-bad", "1.0", "failed"] in listed
    assert ["twin", "adapter", "dexar-two", "1.0", "conflict"] in listed
    assert "ImportError: needs libfoo" in captured.out
    assert captured.err == ""


def test_models_lists_embedded_models(fake_site, capsys):
    fake_site.add_plugin("extras", EMBEDDED_MODEL_PLUGIN, distribution="dexar-extras")

    code, models = run_json(capsys, "models")
    assert code == 0
    assert {
        "name": "shapes-fake",
        "adapter": "fake-vlm",
        "path": "/ckpt/fake",
        "description": "a fake checkpoint",
        "distribution": "dexar-extras",
        "version": "1.0",
    } in models

    assert cli.main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAME", "ADAPTER", "PATH", "DESCRIPTION"]
    assert ["shapes-fake", "fake-vlm", "/ckpt/fake", "a", "fake", "checkpoint"] in [
        line.split() for line in table
    ]


def test_strict_mode_failure_is_a_one_line_error_with_exit_2(fake_site, capsys, monkeypatch):
    fake_site.add_plugin("broken", "raise ImportError('needs libfoo')", distribution="dexar-bad")
    monkeypatch.setenv("DEXAR_STRICT_PLUGINS", "1")

    assert cli.main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dexar: error: dexar plugin 'broken' from dexar-bad 1.0 failed")
    assert "Traceback" not in err


def test_dexar_error_in_a_command_exits_2_without_traceback(capsys, monkeypatch):
    def refuse(args):
        raise InputError("no image at 'cat.png'; give an existing file")

    monkeypatch.setitem(cli.SUBCOMMANDS, "refuse", cli.Subcommand(run=refuse, help="refuse"))

    assert cli.main(["refuse"]) == 2
    assert capsys.readouterr().err == "dexar: error: no image at 'cat.png'; give an existing file\n"


def test_unexpected_error_exits_3_without_traceback(capsys, monkeypatch):
    def crash(args):
        raise RuntimeError("boom")

    monkeypatch.setitem(cli.SUBCOMMANDS, "crash", cli.Subcommand(run=crash, help="crash"))

    assert cli.main(["crash"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("dexar: internal error: RuntimeError: boom")
    assert "Traceback" not in err
    with pytest.raises(RuntimeError):
        cli.main(["--traceback", "crash"])


def test_usage_errors_exit_2(capsys):
    assert cli.main([]) == 2
    assert cli.main(["no-such-command"]) == 2
    assert "usage: dexar" in capsys.readouterr().err


def run_installed_script(*argv: str, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("DEXAR_")}
    environ["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(DEXAR_SCRIPT), *argv], capture_output=True, text=True, env=environ, timeout=60
    )


def test_installed_script_reports_a_broken_plugin_as_a_row(fake_site):
    fake_site.add_plugin("broken", "import no_such_module", distribution="dexar-bad")

    result = run_installed_script("plugins", "--json", pythonpath=fake_site.root)

    assert result.returncode == 1, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows if row["status"] == "failed"] == ["broken"]
    assert {"dexar.core", "llava"} <= {row["name"] for row in rows if row["status"] == "ok"}
    assert "Traceback" not in result.stderr
