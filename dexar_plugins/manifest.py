"""Plugin manifests: a package declares its adapters and embedded models as data.

A plugin package ships ``dexar_plugin.toml`` beside its ``__init__.py`` and hands pluggy
the hooks made from it in one line::

    dexar_adapters, dexar_embedded_models = dexar_plugins.manifest_hooks(__name__)

The host can then know what the plugin provides without importing its code: every
callable is an ``"module:attribute"`` reference (:class:`~dexar_core.values.ImportReference`)
imported when first called. The format (``docs/plugins.md``, "Manifests")::

    [[adapters]]
    name = "myvlm"
    model_types = ["myvlm"]
    architectures = ["MyVlmForConditionalGeneration"]
    factory = "dexar_myvlm.adapter:MyVlmAdapter"
    description = "MyVLM (MyVlmForConditionalGeneration)"
    # optional: priority, refuse_layout, mend_layout, and conformance (a reference to
    # a function returning the ConformanceCase, or the table below)

    [adapters.conformance]
    builder = "dexar_myvlm.tiny:build_tiny_myvlm"
    options = { seed = 0 }
    model_id = "tiny-myvlm"
    image_size = [48, 80]
    # optional: prompt, answer, expected_failures

    [[embedded_models]]
    name = "shapes-myvlm"
    path = "checkpoints/shapes-myvlm"       # relative to the package folder
    adapter = "myvlm"
    # optional: description, example_image, example_prompt, default, recipe

    [embedded_models.recipe]
    class = "dexar_core.zoo.generative:AnswerRecipe"
    # the class's fields: name = "myvlm", builder = "...", ...

Every mistake (no manifest, TOML that does not parse, an unknown key, a value of the
wrong type, a reference to a module that is not installed) is a ``PluginError`` naming
the file, the key and what to do, raised when the package is imported, so the plugin
loader reports the plugin as failed (:mod:`dexar_plugins.loading`).
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from dexar_core.errors import PluginError
from dexar_core.values import AdapterSpec, EmbeddedModelSpec, ImportReference
from dexar_plugins.hookspecs import hookimpl
from dexar_plugins.testing.declared import DeclaredCase

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MANIFEST_NAME = "dexar_plugin.toml"
"""The manifest's file name, inside the plugin package."""

RECIPE_CLASS = "class"
"""The key of a recipe table naming the recipe's class; the others are its fields."""


@attrs.frozen
class Kind:
    """What a manifest value must be: a sentence for errors and a test."""

    description: str
    accepts: Callable[[Any], bool] = attrs.field(eq=False)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


STRING = Kind("a string", lambda value: isinstance(value, str))
STRINGS = Kind(
    "an array of strings",
    lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
)
INTEGER = Kind("an integer", _is_int)
BOOLEAN = Kind("true or false", lambda value: isinstance(value, bool))
TABLE = Kind("a table", lambda value: isinstance(value, dict))
TABLES = Kind(
    "an array of tables ([[...]])",
    lambda value: isinstance(value, list) and all(isinstance(item, dict) for item in value),
)
REFERENCE = Kind('a "package.module:attribute" string', lambda value: isinstance(value, str))
REFERENCE_OR_TABLE = Kind(
    'a "package.module:attribute" string or a table', lambda value: isinstance(value, str | dict)
)
IMAGE_SIZE = Kind(
    "an array [height, width] of two positive integers",
    lambda value: (
        isinstance(value, list)
        and len(value) == 2
        and all(_is_int(side) and side > 0 for side in value)
    ),
)
STRING_TABLE = Kind(
    "a table of strings",
    lambda value: isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
)

TOP_KEYS: Mapping[str, Kind] = {"adapters": TABLES, "embedded_models": TABLES}
ADAPTER_KEYS: Mapping[str, Kind] = {
    "name": STRING,
    "model_types": STRINGS,
    "architectures": STRINGS,
    "factory": REFERENCE,
    "priority": INTEGER,
    "description": STRING,
    "conformance": REFERENCE_OR_TABLE,
    "refuse_layout": REFERENCE,
    "mend_layout": REFERENCE,
}
CONFORMANCE_KEYS: Mapping[str, Kind] = {
    "builder": REFERENCE,
    "options": TABLE,
    "model_id": STRING,
    "image_size": IMAGE_SIZE,
    "prompt": STRING,
    "answer": STRING,
    "expected_failures": STRING_TABLE,
}
MODEL_KEYS: Mapping[str, Kind] = {
    "name": STRING,
    "path": STRING,
    "adapter": STRING,
    "description": STRING,
    "example_image": STRING,
    "example_prompt": STRING,
    "default": BOOLEAN,
    "recipe": TABLE,
}
REQUIRED: Mapping[str, frozenset[str]] = {
    "adapters": frozenset({"name", "factory"}),
    "conformance": frozenset({"builder", "model_id", "image_size"}),
    "embedded_models": frozenset({"name", "path", "adapter"}),
}


@attrs.frozen(kw_only=True)
class Section:
    """One table of a manifest, with where it stands, for the errors that name it."""

    file: Path
    where: str
    values: Mapping[str, Any]

    def error(self, key: str, problem: str) -> PluginError:
        """The error of one key: the file, the key, what is wrong and what to do."""
        return PluginError(f"{self.file}: {self.where}.{key} {problem}")

    def checked(self, kinds: Mapping[str, Kind], required: frozenset[str]) -> dict[str, Any]:
        """The values, each of its kind, every required key present, no other key.

        Raises:
            PluginError: for the first key that is unknown, missing or of another kind.
        """
        for key, value in self.values.items():
            if key not in kinds:
                close = difflib.get_close_matches(key, kinds, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(
                    key, f"is no key of this table; {hint}the keys are: {', '.join(kinds)}."
                )
            if not kinds[key].accepts(value):
                raise self.error(
                    key, f"is {value!r}, but must be {kinds[key].description}; correct it."
                )
        for key in sorted(required - set(self.values)):
            raise self.error(key, f"is missing; add it ({kinds[key].description}).")
        return dict(self.values)

    def reference(self, key: str) -> ImportReference:
        """The value of ``key`` as a reference whose module is installed (not imported).

        Raises:
            PluginError: the value is no reference, or its module cannot be found.
        """
        if key not in self.values:
            raise self.error(key, f"is missing; add it ({REFERENCE.description}).")
        origin = f"{self.file}: {self.where}.{key}"
        reference = ImportReference(path=self.values[key], origin=origin)
        module = reference.path.split(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise self.error(
                key,
                f"= {reference.path!r} names the module {module!r}, which is not installed; "
                "correct the module name, or install the distribution that provides it.",
            )
        return reference

    def refusal(self, error: PluginError) -> PluginError:
        """A spec's own refusal of the table's values, with the file and the table."""
        return PluginError(f"{self.file}: {self.where}: {error}")

    def inner(self, key: str) -> Section:
        """The table under ``key``."""
        return Section(file=self.file, where=f"{self.where}.{key}", values=self.values[key])


def _plain(value: Any) -> Any:
    """TOML arrays as tuples (recipes hold tuples, frozen records hash them), tables as dicts."""
    if isinstance(value, list):
        return tuple(_plain(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@attrs.frozen(kw_only=True)
class Manifest:
    """A plugin package's manifest, read and checked.

    Attributes:
        file: the manifest's path.
        folder: the package folder the embedded models' paths are relative to.
        adapters: the adapters' specs.
        model_sections: the embedded models' tables, checked; their specs are built by
            :meth:`embedded_models`, which imports their recipes' classes.
    """

    file: Path
    folder: Path
    adapters: tuple[AdapterSpec, ...]
    model_sections: tuple[Section, ...]

    @classmethod
    def read(cls, file: Path) -> Manifest:
        """Read and check a manifest; the package folder is the file's.

        Raises:
            PluginError: the file is missing or is not valid TOML, or a key is unknown,
                missing or of the wrong kind, or a reference names a module that is not
                installed.
        """
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise PluginError(
                f"{file}: the plugin manifest cannot be read ({exc}); ship {MANIFEST_NAME} "
                "in the package (package data in pyproject.toml), or register the plugin "
                "with @hookimpl functions instead of manifest_hooks."
            ) from exc
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PluginError(
                f"{file}: the plugin manifest is not valid TOML ({exc}); correct that line."
            ) from exc
        Section(file=file, where="manifest", values=table).checked(TOP_KEYS, frozenset())
        models = _entries(file, table, "embedded_models")
        for model in models:
            model.checked(MODEL_KEYS, REQUIRED["embedded_models"])
            if "recipe" in model.values:
                model.inner("recipe").reference(RECIPE_CLASS)
        return cls(
            file=file,
            folder=file.parent,
            adapters=tuple(_adapter_spec(entry) for entry in _entries(file, table, "adapters")),
            model_sections=models,
        )

    def embedded_models(self) -> tuple[EmbeddedModelSpec, ...]:
        """The embedded models' specs, their recipes built from their classes and fields.

        Raises:
            PluginError: a recipe's class does not import or refuses its fields.
        """
        return tuple(self._embedded_model(section) for section in self.model_sections)

    def _embedded_model(self, section: Section) -> EmbeddedModelSpec:
        values = dict(section.values)
        recipe = None
        if "recipe" in values:
            fields = _plain(values.pop("recipe"))
            recipe_class = section.inner("recipe").reference(RECIPE_CLASS).resolve()
            del fields[RECIPE_CLASS]
            try:
                recipe = recipe_class(**fields)
            except TypeError as exc:
                raise section.error(
                    "recipe",
                    f"does not build the recipe {recipe_class.__name__} ({exc}); give the "
                    "fields that class takes.",
                ) from exc
        values["path"] = self.folder / values["path"]
        if "example_image" in values:
            values["example_image"] = self.folder / values["example_image"]
        try:
            return EmbeddedModelSpec(**values, recipe=recipe)
        except PluginError as exc:
            raise section.refusal(exc) from exc


def _entries(file: Path, table: Mapping[str, Any], array: str) -> tuple[Section, ...]:
    """The tables of an array, each named by its place and, where it has one, its name.

    ``adapters[1] ('llava_next')``: TOML numbers no ``[[adapters]]``, the name finds it.
    """
    entries = []
    for index, values in enumerate(table.get(array, ())):
        name = values.get("name")
        where = f"{array}[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")
        entries.append(Section(file=file, where=where, values=values))
    return tuple(entries)


def _adapter_spec(section: Section) -> AdapterSpec:
    values = section.checked(ADAPTER_KEYS, REQUIRED["adapters"])
    for key in ("factory", "refuse_layout", "mend_layout"):
        if key in values:
            values[key] = section.reference(key)
    if isinstance(values.get("conformance"), str):
        values["conformance"] = section.reference("conformance")
    elif "conformance" in values:
        values["conformance"] = _declared_case(section.inner("conformance"), values["factory"])
    try:
        return AdapterSpec(**values)
    except PluginError as exc:
        raise section.refusal(exc) from exc


def _declared_case(section: Section, adapter: Callable[[], Any]) -> DeclaredCase:
    values = section.checked(CONFORMANCE_KEYS, REQUIRED["conformance"])
    builder = section.reference("builder")
    del values["builder"]
    height, width = values.pop("image_size")
    return DeclaredCase(
        builder=builder,
        options=_plain(values.pop("options", {})),
        adapter=adapter,
        model_id=values.pop("model_id"),
        image_size=(height, width),
        case_options=values,
    )


def package_manifest(package: str) -> Manifest:
    """The manifest of an installed package, found without running the package's code.

    Raises:
        PluginError: ``package`` is no installed package, or its manifest is wrong (see
            :meth:`Manifest.read`).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PluginError(
            f"{package!r} is no installed package, so it has no {MANIFEST_NAME}; call "
            "manifest_hooks(__name__) from a package's __init__.py."
        )
    return Manifest.read(Path(spec.submodule_search_locations[0]) / MANIFEST_NAME)


def manifest_hooks(
    package: str,
) -> tuple[Callable[[], tuple[AdapterSpec, ...]], Callable[[], tuple[EmbeddedModelSpec, ...]]]:
    """The ``dexar_adapters`` and ``dexar_embedded_models`` hooks of a package's manifest.

    Call it from the package's ``__init__.py`` and bind both names there, so that the
    plugin manager finds them on the module the ``dexar`` entry point names::

        dexar_adapters, dexar_embedded_models = manifest_hooks(__name__)

    Raises:
        PluginError: the manifest is missing or wrong (see :meth:`Manifest.read`).
    """
    manifest = package_manifest(package)

    @hookimpl
    def dexar_adapters() -> tuple[AdapterSpec, ...]:
        """The adapters the manifest declares."""
        return manifest.adapters

    @hookimpl
    def dexar_embedded_models() -> tuple[EmbeddedModelSpec, ...]:
        """The embedded models the manifest declares."""
        return manifest.embedded_models()

    return dexar_adapters, dexar_embedded_models
