"""Session fixtures of the published-checkpoint mirrors: each is built and loaded once."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from mirrors import build_mirror, load_fixture

from dexar_core.records import LoadedModel

EXAMPLE_ADAPTERS = {"paligemma": "docs/examples/dexar-paligemma"}
"""Adapters of the example plugins, not of dexar itself, with the folder to install."""


def require_adapter(name: str) -> None:
    """Skip a mirror whose adapter is an example plugin this environment lacks, or whose
    processor needs a package (the fixture's ``requires``) not installed here; under
    ``CI=true``, where pyproject.toml's dependencies are installed, a missing one fails."""
    from dexar_plugins import default_catalog

    fixture = load_fixture(name)
    missing = [pkg for pkg in fixture.get("requires", ()) if importlib.util.find_spec(pkg) is None]
    if missing:
        message = f"the {name} mirror's processor needs {missing}: pip install {' '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    adapter = fixture["adapter"]
    if adapter in EXAMPLE_ADAPTERS and adapter not in default_catalog().adapters:
        pytest.skip(
            f"the {name} mirror needs the example plugin {EXAMPLE_ADAPTERS[adapter]}, not "
            f"installed: pip install -e {EXAMPLE_ADAPTERS[adapter]}"
        )


@pytest.fixture(scope="session")
def mirror_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``mirror_folder(name)``: the folder of the mirror, built on first use."""
    built: dict[str, Path] = {}

    def folder(name: str) -> Path:
        require_adapter(name)
        if name not in built:
            built[name] = build_mirror(name, tmp_path_factory.mktemp(name))
        return built[name]

    return folder


@pytest.fixture(scope="session")
def loaded_mirror(mirror_folder: Callable[[str], Path]) -> Callable[[str], LoadedModel]:
    """``loaded_mirror(name)``: the mirror as ``dexar_core.api.load`` returns it (float32)."""
    from dexar_core.api import load

    loaded: dict[str, LoadedModel] = {}

    def get(name: str) -> LoadedModel:
        if name not in loaded:
            loaded[name] = load(str(mirror_folder(name)), dtype="float32")
        return loaded[name]

    return get
