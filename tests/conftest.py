"""Shared test setup: hypothesis profiles, fake plugin distributions, a saved tiny LLaVA."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from dexar_plugins.loading import DISABLE_AUTOLOAD_ENV, LOAD_PLUGINS_ENV, STRICT_ENV
from dexar_plugins.manager import reset_default_catalog

settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=60)
# the manual fuzz run of docs/reliability.md: `pytest tests/fuzz --hypothesis-profile=long`
settings.register_profile("long", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

FAKE_MODULE_PREFIX = "fake_dexar_"


class FakeSite:
    """A folder on ``sys.path`` holding fake installed distributions that declare plugins.

    Each distribution is a ``<name>-<version>.dist-info`` folder (``METADATA`` and
    ``entry_points.txt``) next to the plugin's module, which is what importlib.metadata
    finds for an installed package; nothing is installed.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()

    def add_plugin(
        self, entry_point: str, source: str, *, distribution: str, version: str = "1.0"
    ) -> str:
        """Write a plugin module and a distribution declaring it; return the module name."""
        module = f"{FAKE_MODULE_PREFIX}{entry_point}"
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        dist_info = self.root / f"{distribution.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        (dist_info / "entry_points.txt").write_text(f"[dexar]\n{entry_point} = {module}\n")
        return module

    def add_adapter_plugin(
        self,
        entry_point: str,
        *,
        adapter: str,
        distribution: str,
        version: str = "1.0",
        model_type: str = "fakevlm",
    ) -> str:
        """Write a plugin registering one adapter that serves ``model_type``."""
        source = f"""
            from dexar_core.values import AdapterSpec
            from dexar_plugins import hookimpl

            @hookimpl
            def dexar_adapters():
                return [AdapterSpec(name={adapter!r}, model_types=({model_type!r},), factory=dict)]
        """
        return self.add_plugin(entry_point, source, distribution=distribution, version=version)


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    """A :class:`FakeSite` on ``sys.path``, with the ``DEXAR_*`` plugin variables unset.

    The default catalog is reset before and after, and the fake modules are forgotten.
    """
    for name in (STRICT_ENV, DISABLE_AUTOLOAD_ENV, LOAD_PLUGINS_ENV):
        monkeypatch.delenv(name, raising=False)
    site = FakeSite(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site.root))
    reset_default_catalog()
    yield site
    reset_default_catalog()
    for module in [name for name in sys.modules if name.startswith(FAKE_MODULE_PREFIX)]:
        del sys.modules[module]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved random tiny LLaVA (seed 0), with a noise ``image.png`` beside its files."""
    from llava_fixtures import noise_image, saved_tiny_llava

    folder = saved_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))
    noise_image(1).save(folder / "image.png")
    return folder


@pytest.fixture(scope="module")
def loaded(tiny_dir: Path) -> Any:
    """That checkpoint, loaded by :func:`dexar_core.api.load`."""
    from dexar_core.api import load

    return load(str(tiny_dir))
