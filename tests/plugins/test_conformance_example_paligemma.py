"""The third-party example dexar-paligemma installs, is discovered, explains and conforms.

The example is installed as a user would install it (``pip install``, offline, no
dependencies, into a folder put on ``PYTHONPATH``); every check then runs in a fresh
process that sees it only through that folder's entry-point metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dexar_plugins.loading import DISABLE_AUTOLOAD_ENV, LOAD_PLUGINS_ENV, STRICT_ENV

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "dexar-paligemma"
DEXAR = Path(sys.executable).with_name("dexar")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(site, env)``: the folder the example is installed into and an environment using it."""
    workdir = tmp_path_factory.mktemp("dexar-paligemma")
    source = workdir / "source"
    # Building in a copy keeps build/ and *.egg-info out of the repository.
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = workdir / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in (STRICT_ENV, DISABLE_AUTOLOAD_ENV, LOAD_PLUGINS_ENV)
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return site, env


def run(command, env, cwd, timeout=300):
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_dexar_plugins_lists_the_example_with_its_distribution(installed, tmp_path):
    site, env = installed
    assert (site / "dexar_paligemma-0.1.0.dist-info" / "entry_points.txt").is_file()
    result = run([str(DEXAR), "plugins", "--json"], env, tmp_path)
    rows = json.loads(result.stdout)
    adapter = [row for row in rows if (row["kind"], row["name"]) == ("adapter", "paligemma")]
    assert adapter, result.stdout
    assert adapter[0]["distribution"] == "dexar-paligemma"
    assert adapter[0]["version"] == "0.1.0"
    assert adapter[0]["status"] == "ok"


def test_dexar_explain_runs_a_saved_tiny_paligemma(installed, tmp_path, monkeypatch):
    site, env = installed
    model_dir, image = tmp_path / "tiny-paligemma", tmp_path / "image.png"
    # The package folder alone (no dist-info) keeps this process's plugin catalog unchanged.
    package_only = tmp_path / "package"
    shutil.copytree(site / "dexar_paligemma", package_only / "dexar_paligemma")
    monkeypatch.syspath_prepend(str(package_only))
    try:
        from dexar_paligemma.tiny import build_tiny_paligemma

        model, processor = build_tiny_paligemma(seed=1)
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
    finally:
        for name in [name for name in sys.modules if name.startswith("dexar_paligemma")]:
            del sys.modules[name]
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    out = tmp_path / "out"
    command = [str(DEXAR), "explain", "--model", str(model_dir), "--image", str(image)]
    command += ["--prompt", "what color is the circle?", "--answer", "red circle"]
    result = run([*command, "--out", str(out)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "answer: red circle" in result.stdout
    record = json.loads((out / "explanation.json").read_text())
    assert record["adapter"] == "paligemma"
    assert (out / "sequence.png").is_file()


def test_the_example_passes_its_conformance_tests(installed, tmp_path):
    _, env = installed
    result = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(EXAMPLE),
            "-c",
            str(EXAMPLE / "pyproject.toml"),
            str(EXAMPLE / "tests"),
        ],
        env,
        tmp_path,
        timeout=500,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "19 passed" in result.stdout
