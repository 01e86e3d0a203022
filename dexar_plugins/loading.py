"""Load dexar plugins from entry points, one at a time, each checked on its own.

Every plugin is an object exposed under the ``dexar`` entry-point group (plus the core's
own methods, registered as a builtin plugin). Each is imported, registered with a pluggy
``PluginManager``, checked for unknown hooks and asked for its specs on its own, so a
broken plugin is skipped and reported with its distribution and version instead of
breaking the others. :mod:`dexar_plugins.manager` indexes what the loaded plugins
register.

Environment variables (read by :meth:`PluginSettings.from_environ`):

* ``DEXAR_STRICT_PLUGINS=1``: a load failure or name conflict raises ``PluginError``.
* ``DEXAR_DISABLE_PLUGIN_AUTOLOAD=1``: no entry point is loaded (the builtin still is).
* ``DEXAR_LOAD_PLUGINS=name1,name2``: load only these entry-point names; set but empty
  loads none.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import pluggy

import dexar_core
from dexar_core.errors import PluginError
from dexar_core.values import AdapterSpec, EmbeddedModelSpec, MethodSpec
from dexar_plugins import hookspecs

ENTRY_POINT_GROUP = "dexar"
BUILTIN_PLUGIN_NAME = "dexar.core"
BUILTIN_PLUGIN_MODULE = "dexar_core.methods.plugin"
STRICT_ENV = "DEXAR_STRICT_PLUGINS"
DISABLE_AUTOLOAD_ENV = "DEXAR_DISABLE_PLUGIN_AUTOLOAD"
LOAD_PLUGINS_ENV = "DEXAR_LOAD_PLUGINS"

HOOK_SPEC_TYPES: Mapping[str, type] = MappingProxyType(
    {
        "dexar_adapters": AdapterSpec,
        "dexar_methods": MethodSpec,
        "dexar_embedded_models": EmbeddedModelSpec,
    }
)


class PluginWarning(UserWarning):
    """A plugin failed to load, or claims a name another plugin claims too."""


def _env_flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@attrs.frozen(kw_only=True)
class PluginSettings:
    """Which entry points to load and how to treat a broken plugin.

    Attributes:
        strict: raise ``PluginError`` on a load failure or name conflict instead of
            warning and skipping.
        autoload: load entry points at all; the builtin plugin is loaded regardless.
        allow_list: the entry-point names to load, or None for all of them.
    """

    strict: bool = False
    autoload: bool = True
    allow_list: tuple[str, ...] | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> PluginSettings:
        """Read the ``DEXAR_*`` plugin variables (``os.environ`` when none is given)."""
        environ = os.environ if environ is None else environ
        allowed = environ.get(LOAD_PLUGINS_ENV)
        return cls(
            strict=_env_flag(environ, STRICT_ENV),
            autoload=not _env_flag(environ, DISABLE_AUTOLOAD_ENV),
            allow_list=None
            if allowed is None
            else tuple(name.strip() for name in allowed.split(",") if name.strip()),
        )

    def allows(self, entry_point_name: str) -> bool:
        """Whether the entry point of this name is to be loaded."""
        return self.autoload and (self.allow_list is None or entry_point_name in self.allow_list)


@attrs.frozen(kw_only=True)
class LoadedPlugin:
    """A plugin that loaded, with everything it registered.

    Attributes:
        name: the entry-point name (``dexar.core`` for the builtin plugin).
        distribution: the distribution that declares the entry point.
        version: that distribution's version.
        hooks: names of the hooks the plugin implements; empty is fine.
        adapters: specs returned by its ``dexar_adapters``.
        methods: specs returned by its ``dexar_methods``.
        embedded_models: specs returned by its ``dexar_embedded_models``.
        builtin: True for the core's own plugin.
    """

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...] = ()
    adapters: tuple[AdapterSpec, ...] = ()
    methods: tuple[MethodSpec, ...] = ()
    embedded_models: tuple[EmbeddedModelSpec, ...] = ()
    builtin: bool = False


@attrs.frozen(kw_only=True)
class PluginFailure:
    """A plugin that was skipped because it failed to load.

    Attributes:
        name: the entry-point name.
        distribution: the distribution that declares the entry point.
        version: that distribution's version.
        error: what went wrong, e.g. ``"ModuleNotFoundError: No module named 'x'"``.
    """

    name: str
    distribution: str
    version: str
    error: str

    @property
    def message(self) -> str:
        """The full sentence for warnings and errors: who, what, and what to do."""
        return (
            f"dexar plugin {self.name!r} from {self.distribution} {self.version} failed to "
            f"load: {self.error}. Upgrade or uninstall {self.distribution}, or list the "
            f"plugins you want in {LOAD_PLUGINS_ENV}."
        )


@attrs.frozen(kw_only=True)
class LoadedPlugins:
    """The outcome of loading: the pluggy manager, the plugins loaded and those skipped."""

    manager: pluggy.PluginManager = attrs.field(eq=False, repr=False)
    settings: PluginSettings
    plugins: tuple[LoadedPlugin, ...]
    failures: tuple[PluginFailure, ...]


def load_plugins(settings: PluginSettings | None = None) -> LoadedPlugins:
    """Load the builtin plugin and the allowed ``dexar`` entry points, one at a time.

    Args:
        settings: what to load and how strictly; read from the environment when None.

    Returns:
        The plugins that loaded and the failures, in entry-point name order after the
        builtin plugin.

    Raises:
        PluginError: in strict mode, for the first plugin that fails to load.
    """
    settings = PluginSettings.from_environ() if settings is None else settings
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    plugins: list[LoadedPlugin] = []
    failures: list[PluginFailure] = []

    def load(name: str, import_plugin: Callable[[], object], dist: str, version: str) -> None:
        try:
            plugins.append(
                _load_one(manager, name, import_plugin, distribution=dist, version=version)
            )
        except Exception as exc:
            failure = PluginFailure(
                name=name, distribution=dist, version=version, error=_describe(exc)
            )
            if settings.strict:
                raise PluginError(failure.message) from exc
            warnings.warn(failure.message, PluginWarning, stacklevel=3)
            failures.append(failure)

    load(
        BUILTIN_PLUGIN_NAME,
        functools.partial(importlib.import_module, BUILTIN_PLUGIN_MODULE),
        "dexar",
        dexar_core.__version__,
    )
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for entry_point in sorted(entry_points, key=lambda ep: (ep.name, ep.value)):
        if settings.allows(entry_point.name):
            load(entry_point.name, entry_point.load, *_distribution_of(entry_point))
    return LoadedPlugins(
        manager=manager, settings=settings, plugins=tuple(plugins), failures=tuple(failures)
    )


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = entry_point.dist
    if dist is None:
        return ("<unknown distribution>", "<unknown version>")
    return (dist.name, dist.version)


def _describe(exc: BaseException) -> str:
    """The error text of a failure; dexar's own checks need no exception type in front."""
    return str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"


def _load_one(
    manager: pluggy.PluginManager,
    name: str,
    import_plugin: Callable[[], object],
    *,
    distribution: str,
    version: str,
) -> LoadedPlugin:
    """Import, register and validate one plugin; on any error leave it unregistered."""
    plugin = import_plugin()
    if plugin is None:
        raise PluginError("the entry point resolves to None, not a module or object")
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError:
        # Older pluggy (pyproject allows >=1.5) recorded the name before validating.
        if manager.get_plugin(name) is plugin:
            manager.unregister(name=name)
        raise
    try:
        _check_hook_names(manager, plugin)
        hooks = tuple(
            sorted(
                caller.name for caller in manager.get_hookcallers(plugin) or () if caller.has_spec()
            )
        )
        specs = {hook: _call_own_hook(manager, plugin, hook) for hook in hooks}
    except BaseException:
        manager.unregister(name=name)
        raise
    return LoadedPlugin(
        name=name,
        distribution=distribution,
        version=version,
        hooks=hooks,
        adapters=specs.get("dexar_adapters", ()),
        methods=specs.get("dexar_methods", ()),
        embedded_models=specs.get("dexar_embedded_models", ()),
        builtin=name == BUILTIN_PLUGIN_NAME,
    )


def _check_hook_names(manager: pluggy.PluginManager, plugin: object) -> None:
    """Raise for a hook implementation whose name is no dexar hook (a misspelling).

    Earlier plugins were checked when they were registered, so anything pending now
    belongs to this one.
    """
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        unknown = [
            caller.name for caller in manager.get_hookcallers(plugin) or () if not caller.has_spec()
        ]
        hints = [
            f"the dexar hook closest to {name!r} is {match[0]!r}"
            for name in unknown
            if (match := difflib.get_close_matches(name, HOOK_SPEC_TYPES, n=1))
        ] or [f"the dexar hooks are {', '.join(HOOK_SPEC_TYPES)}"]
        raise PluginError(f"{exc}; {'; '.join(hints)}") from exc


def _call_own_hook(manager: pluggy.PluginManager, plugin: object, hook: str) -> tuple[Any, ...]:
    """Call only this plugin's implementation of a hook and check what it returns."""
    others = [other for other in manager.get_plugins() if other is not plugin]
    spec_type = HOOK_SPEC_TYPES[hook]
    specs: list[Any] = []
    for result in manager.subset_hook_caller(hook, remove_plugins=others)():
        if isinstance(result, str | bytes) or not isinstance(result, Iterable):
            raise PluginError(
                f"hook {hook} returned {result!r}; it must return an iterable of "
                f"{spec_type.__name__}"
            )
        for item in result:
            if not isinstance(item, spec_type):
                raise PluginError(
                    f"hook {hook} returned {item!r} of type {type(item).__name__}; every "
                    f"item must be a dexar_core.values.{spec_type.__name__}"
                )
            specs.append(item)
    return tuple(specs)
