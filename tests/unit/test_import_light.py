"""Importing the core, the plugin system and the CLI stays light: no torch, no transformers."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY_MODULES = ("torch", "transformers")


def test_import_leaves_torch_and_transformers_out():
    probe = (
        "import json, sys\n"
        "import dexar_core, dexar_plugins, dexar_core.cli.main\n"
        f"print(json.dumps([name for name in {HEAVY_MODULES!r} if name in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert json.loads(result.stdout) == []
