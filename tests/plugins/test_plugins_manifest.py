"""Plugin manifests: what a package declares in dexar_plugin.toml, and every mistake in one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dexar_core.errors import PluginError
from dexar_core.values import AdapterSpec, ImportReference
from dexar_core.zoo.generative import AnswerRecipe
from dexar_plugins.loading import LoadedPlugins, PluginSettings, PluginWarning, load_plugins

# tomllib, or tomli before Python 3.11, as the manifests are read
from dexar_plugins.manifest import MANIFEST_NAME, Manifest, manifest_hooks, tomllib
from dexar_plugins.testing.declared import DeclaredCase

ROOT = Path(__file__).resolve().parents[2]

HOOKS = "from dexar_plugins import manifest_hooks\n\n"
HOOKS += "dexar_adapters, dexar_embedded_models = manifest_hooks(__name__)\n"

GOOD = """
    [[adapters]]
    name = "good-vlm"
    model_types = ["goodvlm"]
    factory = "{package}.adapter:build_adapter"
    description = "a good VLM"

    [adapters.conformance]
    builder = "{package}.adapter:build_tiny"
    options = {{ seed = 3, width = 8 }}
    model_id = "tiny-good"
    image_size = [4, 6]
    prompt = "what is it?"
    expected_failures = {{ heatmap_invariants = "not yet" }}

    [[embedded_models]]
    name = "shapes-good"
    path = "checkpoints/shapes-good"
    adapter = "good-vlm"
    example_image = "example.png"
    default = true

    [embedded_models.recipe]
    class = "dexar_core.zoo.generative:AnswerRecipe"
    name = "good"
    builder = "{package}.adapter:build_tiny"
    prompt_formatter = "{package}.adapter:build_tiny"
    description = "a good recipe"
    extra_image_sizes = [[8, 8], [8, 12]]
    model_options = {{ text_layers = 4 }}
"""

ADAPTER_MODULE = """
def build_adapter():
    return {"adapter": "good"}


def build_tiny(**options):
    return ("model", options), "processor"
"""


def write_package(fake_site, name: str, manifest: str | None, *, version: str = "1.0") -> str:
    """A plugin package (``__init__.py`` with the manifest hooks, ``adapter.py``, the
    manifest) declared by a fake distribution; returns the package name."""
    module = fake_site.add_plugin(name, HOOKS, distribution=f"dexar-{name}", version=version)
    package = fake_site.root / module
    package.mkdir()
    (fake_site.root / f"{module}.py").rename(package / "__init__.py")
    (package / "adapter.py").write_text(ADAPTER_MODULE)
    if manifest is not None:
        (package / MANIFEST_NAME).write_text(textwrap.dedent(manifest.format(package=module)))
    return module


def load(name: str) -> LoadedPlugins:
    """Load the builtin plugin and the fake one named, not the installed adapters."""
    return load_plugins(PluginSettings(allow_list=(name,)))


def manifest_error(fake_site, manifest: str | None) -> str:
    """The error text with which the loader skips a package with this manifest."""
    write_package(fake_site, "broken", manifest)
    with pytest.warns(PluginWarning):
        (failure,) = load("broken").failures
    assert failure.name == "broken"
    return failure.error


def test_a_manifest_package_registers_its_adapter_case_and_embedded_model(fake_site):
    package = write_package(fake_site, "good", GOOD)

    (plugin,) = [plugin for plugin in load("good").plugins if plugin.name == "good"]
    assert plugin.hooks == ("dexar_adapters", "dexar_embedded_models")
    (spec,) = plugin.adapters
    assert (spec.name, spec.model_types, spec.description) == (
        "good-vlm",
        ("goodvlm",),
        "a good VLM",
    )
    assert spec.factory == ImportReference(path=f"{package}.adapter:build_adapter")
    assert spec.factory() == {"adapter": "good"}
    assert isinstance(spec.conformance, DeclaredCase)
    case = spec.conformance()
    assert case.loaded.model == ("model", {"seed": 3, "width": 8})
    assert case.loaded.adapter == {"adapter": "good"}
    assert (case.loaded.model_id, case.prompt, case.answer) == (
        "tiny-good",
        "what is it?",
        "a red circle",
    )
    assert case.images[0].size == (6, 4)  # PIL: width, height
    assert dict(case.expected_failures) == {"heatmap_invariants": "not yet"}
    variant = spec.conformance.with_options(width=16)()
    assert variant.loaded.model == ("model", {"seed": 3, "width": 16})
    (model,) = plugin.embedded_models
    folder = fake_site.root / package
    assert model.path == folder / "checkpoints" / "shapes-good"
    assert model.example_image == folder / "example.png"
    assert model.default is True
    assert model.recipe == AnswerRecipe(
        name="good",
        builder=f"{package}.adapter:build_tiny",
        prompt_formatter=f"{package}.adapter:build_tiny",
        description="a good recipe",
        extra_image_sizes=((8, 8), (8, 12)),
        model_options={"text_layers": 4},
    )


def test_listing_the_built_in_plugins_imports_none_of_their_code():
    script = """
import json, sys
from dexar_plugins import PluginSettings, build_catalog
catalog = build_catalog(PluginSettings(strict=True))
names = [registration.name for registration in catalog.adapters.values()]
adapter_modules = [m for m in sys.modules if m.split(".")[-1] in ("adapter", "tiny")]
print(json.dumps([names, adapter_modules, "torch" in sys.modules]))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    names, adapter_modules, torch_imported = json.loads(result.stdout)
    assert {"llava", "llava_next", "qwen_vl", "blip2", "open_clip", "mllama"} <= set(names)
    assert adapter_modules == []
    assert torch_imported is False


def test_every_built_in_package_ships_its_manifest_as_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    assert "*.toml" in patterns
    for package in sorted((ROOT / "adapters").glob("dexar_*")):
        Manifest.read(package / MANIFEST_NAME)  # present and valid


def test_the_example_packages_ship_their_manifests():
    for example, package in (("dexar-paligemma", "dexar_paligemma"), ("template", "dexar_myvlm")):
        folder = ROOT / "docs" / "examples" / example
        pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
        assert pyproject["tool"]["setuptools"]["package-data"][package] == [MANIFEST_NAME]
        assert (folder / package / MANIFEST_NAME).is_file()


def test_a_package_without_a_manifest_fails_to_load_saying_what_to_ship(fake_site):
    error = manifest_error(fake_site, None)

    assert f"{MANIFEST_NAME}: the plugin manifest cannot be read" in error
    assert "package data" in error


def test_a_manifest_that_is_not_toml_names_the_file_and_the_line(fake_site):
    error = manifest_error(fake_site, '[[adapters]]\nname = "x\n')

    assert MANIFEST_NAME in error
    assert "is not valid TOML" in error
    assert "line 2" in error


MISTAKES = {
    "unknown key": (
        '[[adapters]]\nname = "x"\nmodel_types = ["x"]\nfactory = "json:loads"\n'
        "architecture = []\n",
        "adapters[0] ('x').architecture is no key of this table; did you mean 'architectures'?",
    ),
    "unknown top-level key": (
        '[[adaptors]]\nname = "x"\n',
        "manifest.adaptors is no key of this table; did you mean 'adapters'?",
    ),
    "wrong type": (
        '[[adapters]]\nname = "x"\nmodel_types = "x"\nfactory = "json:loads"\n',
        "adapters[0] ('x').model_types is 'x', but must be an array of strings",
    ),
    "wrong image size": (
        '[[adapters]]\nname = "x"\nmodel_types = ["x"]\nfactory = "json:loads"\n'
        '[adapters.conformance]\nbuilder = "json:loads"\nmodel_id = "t"\nimage_size = [4]\n',
        "adapters[0] ('x').conformance.image_size is [4], but must be an array [height, width]",
    ),
    "missing key": (
        '[[embedded_models]]\nname = "m"\nadapter = "x"\n',
        "embedded_models[0] ('m').path is missing; add it (a string)",
    ),
    "not a reference": (
        '[[adapters]]\nname = "x"\nmodel_types = ["x"]\nfactory = "json.loads"\n',
        "adapters[0] ('x').factory: 'json.loads' is no import reference",
    ),
    "module not installed": (
        '[[adapters]]\nname = "x"\nmodel_types = ["x"]\nfactory = "no_such_dexar_module.a:B"\n',
        "adapters[0] ('x').factory = 'no_such_dexar_module.a:B' names the module "
        "'no_such_dexar_module.a', which is not installed",
    ),
    "a spec refusing the values": (
        '[[adapters]]\nname = "x"\nfactory = "json:loads"\n',
        "adapters[0] ('x'): AdapterSpec 'x' serves no model: give model_types or architectures.",
    ),
    "recipe without class": (
        '[[embedded_models]]\nname = "m"\npath = "m"\nadapter = "x"\n'
        '[embedded_models.recipe]\nname = "m"\n',
        "embedded_models[0] ('m').recipe.class is missing",
    ),
    "recipe refusing its fields": (
        '[[embedded_models]]\nname = "m"\npath = "m"\nadapter = "x"\n'
        '[embedded_models.recipe]\nclass = "dexar_core.zoo.generative:AnswerRecipe"\n'
        'name = "m"\n',
        "embedded_models[0] ('m').recipe does not build the recipe AnswerRecipe",
    ),
}


@pytest.mark.parametrize("manifest, expected", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_in_a_manifest_fails_the_plugin_naming_the_file_and_the_key(
    fake_site, manifest, expected
):
    error = manifest_error(fake_site, manifest)

    assert f"{MANIFEST_NAME}: " in error
    assert expected in error


def test_a_reference_that_does_not_import_fails_when_called_naming_file_and_key(fake_site):
    manifest = '[[adapters]]\nname = "x"\nmodel_types = ["x"]\nfactory = "{package}.adapter:Nope"\n'
    write_package(fake_site, "late", manifest)
    (plugin,) = [p for p in load("late").plugins if p.name == "late"]
    (spec,) = plugin.adapters

    with pytest.raises(PluginError, match=r"adapters\[0\] \('x'\)\.factory: '.*:Nope' does not"):
        spec.factory()


def test_manifest_hooks_refuses_a_name_that_is_no_package():
    with pytest.raises(PluginError, match=r"'json\.decoder' is no installed package"):
        manifest_hooks("json.decoder")


def test_adapter_spec_takes_import_references_for_its_callables():
    spec = AdapterSpec(
        name="x",
        model_types=("x",),
        factory="json:JSONDecoder",
        mend_layout="json:dumps",
    )

    assert spec.factory == ImportReference(path="json:JSONDecoder")
    assert type(spec.factory()).__name__ == "JSONDecoder"
    assert spec.mend_layout is not None and spec.mend_layout([1]) == "[1]"
    with pytest.raises(PluginError, match="AdapterSpec: 'json' is no import reference"):
        AdapterSpec(name="x", model_types=("x",), factory="json")
    with pytest.raises(PluginError, match="which is not callable"):
        AdapterSpec(name="x", model_types=("x",), factory="json:__doc__").factory()
