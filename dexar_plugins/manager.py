"""Load dexar plugins from entry points, one at a time, and index what they register.

Every plugin is an object exposed under the ``dexar`` entry-point group (plus the core's
own methods, registered as a builtin plugin). Each is imported, registered with a pluggy
``PluginManager``, checked for unknown hooks and asked for its specs on its own, so a
broken plugin is skipped and reported with its distribution and version instead of
breaking the others. The specs of the plugins that loaded are indexed by name in a
:class:`Catalog`; two plugins claiming one name make that name a :class:`NameConflict`.

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
from typing import Any, Generic, TypeVar

import attrs
import pluggy

import dexar_core
from dexar_core.errors import InputError, PluginConflictError, PluginError
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

SpecT = TypeVar("SpecT", AdapterSpec, MethodSpec, EmbeddedModelSpec)


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


@attrs.frozen(kw_only=True)
class Registration(Generic[SpecT]):
    """One registered spec, with the plugin and distribution that gave it."""

    spec: SpecT
    plugin: str
    distribution: str
    version: str

    @property
    def name(self) -> str:
        """The spec's name."""
        return self.spec.name


@attrs.frozen(kw_only=True)
class NameConflict:
    """Several registrations claim one adapter, method or embedded-model name.

    Attributes:
        kind: ``"adapter"``, ``"method"`` or ``"embedded-model"``.
        name: the name claimed more than once.
        claims: every registration claiming it, in load order.
    """

    kind: str
    name: str
    claims: tuple[Registration[Any], ...]

    @property
    def message(self) -> str:
        """The full sentence naming the name and every claiming distribution."""
        claimants = " and ".join(
            f"plugin {claim.plugin!r} from {claim.distribution} {claim.version}"
            for claim in self.claims
        )
        return (
            f"{len(self.claims)} plugins claim the {self.kind} name {self.name!r}: "
            f"{claimants}. The name is unusable until one of them is uninstalled or left "
            f"out of {LOAD_PLUGINS_ENV}."
        )

    def error(self) -> PluginConflictError:
        """The error raised when the conflicting name is looked up."""
        return PluginConflictError(self.message)


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class Catalog:
    """Adapters, methods and embedded models of the loaded plugins, by name.

    Build one with :meth:`from_plugins` or :func:`build_catalog`; names claimed by two
    registrations are left out of the tables and listed in ``conflicts``.

    Attributes:
        plugins: the plugins that loaded.
        failures: the plugins that were skipped.
        adapters: adapter registrations by adapter name.
        methods: method registrations by method name.
        embedded_models: embedded-model registrations by model name.
        conflicts: names claimed more than once.
        default_claims: the embedded models whose spec says ``default=True``; exactly
            one makes :meth:`default_embedded_model` answer.
    """

    plugins: tuple[LoadedPlugin, ...]
    failures: tuple[PluginFailure, ...] = ()
    adapters: Mapping[str, Registration[AdapterSpec]] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    methods: Mapping[str, Registration[MethodSpec]] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    embedded_models: Mapping[str, Registration[EmbeddedModelSpec]] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    conflicts: tuple[NameConflict, ...] = ()
    default_claims: tuple[Registration[EmbeddedModelSpec], ...] = ()

    @classmethod
    def from_plugins(cls, loaded: LoadedPlugins) -> Catalog:
        """Index what the loaded plugins registered.

        Raises:
            PluginConflictError: in strict mode, for the first name claimed twice or
                when several embedded models claim to be the default (in lenient mode
                each is a ``PluginWarning``).
        """
        adapters, adapter_conflicts = _index("adapter", loaded.plugins, "adapters")
        methods, method_conflicts = _index("method", loaded.plugins, "methods")
        models, model_conflicts = _index("embedded-model", loaded.plugins, "embedded_models")
        conflicts = (*adapter_conflicts, *method_conflicts, *model_conflicts)
        for conflict in conflicts:
            if loaded.settings.strict:
                raise conflict.error()
            warnings.warn(conflict.message, PluginWarning, stacklevel=2)
        default_claims = tuple(
            registration for registration in models.values() if registration.spec.default
        )
        if len(default_claims) > 1:
            if loaded.settings.strict:
                raise PluginConflictError(_several_defaults(default_claims))
            warnings.warn(_several_defaults(default_claims), PluginWarning, stacklevel=2)
        return cls(
            plugins=loaded.plugins,
            failures=loaded.failures,
            adapters=adapters,
            methods=methods,
            embedded_models=models,
            conflicts=conflicts,
            default_claims=default_claims,
        )

    @property
    def broken(self) -> bool:
        """Whether any plugin failed to load or any name is claimed twice."""
        return bool(self.failures or self.conflicts)

    def conflict(self, kind: str, name: str) -> NameConflict | None:
        """The conflict over this name of this kind, if there is one."""
        return next((c for c in self.conflicts if (c.kind, c.name) == (kind, name)), None)

    def adapter(self, name: str) -> AdapterSpec:
        """The adapter registered under this name.

        Raises:
            PluginConflictError: two plugins claim the name.
            InputError: no adapter has this name; the message lists the installed ones.
        """
        return self._lookup("adapter", self.adapters, name).spec

    def method(self, name: str) -> MethodSpec:
        """The explanation method registered under this name (errors as :meth:`adapter`)."""
        return self._lookup("method", self.methods, name).spec

    def embedded_model(self, name: str) -> EmbeddedModelSpec:
        """The embedded model registered under this name (errors as :meth:`adapter`)."""
        return self._lookup("embedded-model", self.embedded_models, name).spec

    def default_embedded_model(self) -> EmbeddedModelSpec:
        """The embedded model used when none is named: the one whose spec says default.

        Raises:
            PluginConflictError: several embedded models claim to be the default.
            InputError: none does (the message lists the installed models to name).
        """
        if len(self.default_claims) == 1:
            return self.default_claims[0].spec
        if self.default_claims:
            raise PluginConflictError(_several_defaults(self.default_claims))
        installed = ", ".join(sorted(self.embedded_models)) or "none"
        raise InputError(
            "No installed embedded model is marked as the default (EmbeddedModelSpec"
            f"(default=True)); name one with --model. The installed ones are: {installed}."
        )

    def _lookup(
        self, kind: str, table: Mapping[str, Registration[SpecT]], name: str
    ) -> Registration[SpecT]:
        if name in table:
            return table[name]
        conflict = self.conflict(kind, name)
        if conflict is not None:
            raise conflict.error()
        installed = ", ".join(sorted(table)) or "none"
        raise InputError(
            f"No {kind} named {name!r} is installed; the installed {kind}s are: {installed}. "
            "Check the spelling, or run `dexar plugins` to see every plugin, including "
            "those that failed to load."
        )


def _several_defaults(claims: Iterable[Registration[EmbeddedModelSpec]]) -> str:
    """The sentence naming every embedded model that claims to be the default."""
    claimants = " and ".join(
        f"{claim.name!r} (plugin {claim.plugin!r} from {claim.distribution} {claim.version})"
        for claim in claims
    )
    return (
        f"Several embedded models claim to be the default: {claimants}. There is no "
        "default model until all but one of them are uninstalled or left out of "
        f"{LOAD_PLUGINS_ENV}; name a model with --model meanwhile."
    )


def _index(
    kind: str, plugins: Iterable[LoadedPlugin], attribute: str
) -> tuple[dict[str, Registration[Any]], list[NameConflict]]:
    """Group the plugins' specs of one kind by name; a name given twice is a conflict."""
    by_name: dict[str, list[Registration[Any]]] = {}
    for plugin in plugins:
        for spec in getattr(plugin, attribute):
            registration = Registration(
                spec=spec,
                plugin=plugin.name,
                distribution=plugin.distribution,
                version=plugin.version,
            )
            by_name.setdefault(spec.name, []).append(registration)
    table = {name: claims[0] for name, claims in by_name.items() if len(claims) == 1}
    conflicts = [
        NameConflict(kind=kind, name=name, claims=tuple(claims))
        for name, claims in by_name.items()
        if len(claims) > 1
    ]
    return table, conflicts


def build_catalog(settings: PluginSettings | None = None) -> Catalog:
    """Load the plugins afresh and index them; no global state is read or kept.

    Args:
        settings: what to load and how strictly; read from the environment when None.
    """
    return Catalog.from_plugins(load_plugins(settings))


@functools.cache
def default_catalog() -> Catalog:
    """The process-wide catalog, built from the environment on first use and then reused.

    Call :func:`reset_default_catalog` after installing plugins or changing the
    ``DEXAR_*`` variables in a running process (tests do).
    """
    return build_catalog()


def reset_default_catalog() -> None:
    """Forget the process-wide catalog so the next :func:`default_catalog` rebuilds it."""
    default_catalog.cache_clear()
