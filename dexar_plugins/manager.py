"""Index what the loaded plugins register: the catalog of adapters, methods and models.

:func:`build_catalog` loads the plugins (:mod:`dexar_plugins.loading`) and indexes the
specs of those that loaded by name in a :class:`Catalog`; two plugins claiming one name
make that name a :class:`NameConflict`. :func:`default_catalog` is the process-wide one.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from dexar_core.errors import InputError, PluginConflictError
from dexar_core.values import AdapterSpec, EmbeddedModelSpec, MethodSpec
from dexar_plugins.loading import LOAD_PLUGINS_ENV, PluginSettings, PluginWarning, load_plugins

if TYPE_CHECKING:
    from dexar_plugins.loading import LoadedPlugin, LoadedPlugins, PluginFailure

SpecT = TypeVar("SpecT", AdapterSpec, MethodSpec, EmbeddedModelSpec)


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
