"""Choose the adapter for a model, look up methods and embedded models, list everything.

Every function takes an optional :class:`~dexar_plugins.manager.Catalog`; without one it
uses the process-wide :func:`~dexar_plugins.manager.default_catalog`.
"""

from __future__ import annotations

import warnings
from typing import Any

import attrs

from dexar_core.errors import UnsupportedModelError
from dexar_core.values import AdapterSpec, EmbeddedModelSpec, MethodSpec
from dexar_plugins.loading import LOAD_PLUGINS_ENV, PluginWarning
from dexar_plugins.manager import Catalog, NameConflict, Registration, default_catalog

ADAPTER_GUIDE = "docs/adapters.md"
SHOWN_CLASS_NAMES = 4


def resolve_adapter(model_or_config: object, catalog: Catalog | None = None) -> AdapterSpec:
    """The adapter that serves a model, chosen by model type or class name.

    An adapter serves the model when the config's ``model_type`` is one of its
    ``model_types``, or when one of its ``architectures`` is an entry of
    ``config.architectures`` or the name of the model's class or of a class it derives
    from. Among several, the highest ``priority`` wins, then the smallest name.

    Args:
        model_or_config: a model (anything with a ``.config``), a config (anything with
            ``model_type`` or ``architectures``), another model object (matched by its
            class names), or a ``model_type`` string.
        catalog: where to look; the default catalog when None.

    Raises:
        UnsupportedModelError: no installed adapter serves the model; the message lists
            the installed adapters and how to get one.
        PluginConflictError: the winning adapter name is claimed by two plugins.
    """
    catalog = default_catalog() if catalog is None else catalog
    model_type, class_names = _model_identity(model_or_config)
    candidates: list[tuple[int, str, Registration[AdapterSpec] | NameConflict]] = [
        (registration.spec.priority, name, registration)
        for name, registration in catalog.adapters.items()
        if registration.spec.serves(model_type, class_names)
    ]
    for conflict in catalog.conflicts:
        if conflict.kind != "adapter":
            continue
        serving = [c.spec for c in conflict.claims if c.spec.serves(model_type, class_names)]
        if serving:
            candidates.append((max(spec.priority for spec in serving), conflict.name, conflict))
    if not candidates:
        raise UnsupportedModelError(_unsupported_message(catalog, model_type, class_names))
    ranked = sorted(candidates, key=lambda c: (-c[0], c[1]))
    winner = ranked[0][2]
    if isinstance(winner, NameConflict):
        raise winner.error()
    if len(ranked) > 1:
        # A plugin claiming a model another adapter serves must not take it over unseen.
        others = ", ".join(_origin(c[2]) for c in ranked[1:])
        warnings.warn(
            f"several adapters serve this model (model_type {model_type!r}): using "
            f"{_origin(winner)} because {_why_first(ranked)}, over {others}. Uninstall the "
            f"one you do not want, or leave it out of {LOAD_PLUGINS_ENV}.",
            PluginWarning,
            stacklevel=2,
        )
    return winner.spec


def _origin(claim: Registration[AdapterSpec] | NameConflict) -> str:
    if isinstance(claim, NameConflict):
        return f"adapter {claim.name!r} (claimed by {len(claim.claims)} plugins)"
    return (
        f"adapter {claim.name!r} from {claim.distribution} {claim.version} "
        f"(priority {claim.spec.priority})"
    )


def _why_first(ranked: list[tuple[int, str, Any]]) -> str:
    """Why the first of the ranked candidates is chosen: priority, else the name."""
    (first_priority, first_name, _), (second_priority, second_name, _) = ranked[:2]
    if first_priority > second_priority:
        return f"its priority {first_priority} is the highest"
    return f"the priorities tie at {first_priority} and {first_name!r} sorts before {second_name!r}"


def _model_identity(model_or_config: object) -> tuple[str | None, tuple[str, ...]]:
    """The ``model_type`` and the class names by which adapters may claim a model."""
    if isinstance(model_or_config, str):
        return model_or_config, ()
    config = getattr(model_or_config, "config", None)
    is_model = config is not None
    if not is_model and _looks_like_config(model_or_config):
        config = model_or_config
    model_type = getattr(config, "model_type", None)
    architectures = getattr(config, "architectures", None) or ()
    class_names = [str(name) for name in architectures if isinstance(name, str)]
    if is_model or config is None:
        class_names += [cls.__name__ for cls in type(model_or_config).__mro__[:-1]]
    return (model_type if isinstance(model_type, str) else None), tuple(dict.fromkeys(class_names))


def _looks_like_config(candidate: object) -> bool:
    return hasattr(candidate, "model_type") or hasattr(candidate, "architectures")


def _unsupported_message(
    catalog: Catalog, model_type: str | None, class_names: tuple[str, ...]
) -> str:
    shown = ", ".join(class_names[:SHOWN_CLASS_NAMES]) or "none"
    installed = [
        f"  {name}: model types {', '.join(reg.spec.model_types) or 'none'}; classes "
        f"{', '.join(reg.spec.architectures) or 'none'} ({reg.distribution} {reg.version})"
        for name, reg in sorted(catalog.adapters.items())
    ]
    package = f"dexar-{model_type.replace('_', '-')}" if model_type else "dexar-<arch>"
    lines = [
        f"No installed dexar adapter serves this model (model_type {model_type!r}; "
        f"classes {shown}).",
        "Installed adapters:" if installed else "Installed adapters: none.",
        *installed,
        f"Install the adapter package for this architecture (`pip install {package}`), "
        f"or write one: see {ADAPTER_GUIDE}.",
    ]
    if catalog.failures:
        lines.append(
            f"{len(catalog.failures)} plugin(s) failed to load and may hold the adapter you "
            "need: run `dexar plugins` to see them."
        )
    return "\n".join(lines)


def get_adapter(name: str, catalog: Catalog | None = None) -> AdapterSpec:
    """The adapter registered under this name (see :meth:`Catalog.adapter`)."""
    return (default_catalog() if catalog is None else catalog).adapter(name)


def get_method(name: str, catalog: Catalog | None = None) -> MethodSpec:
    """The explanation method registered under this name (see :meth:`Catalog.method`)."""
    return (default_catalog() if catalog is None else catalog).method(name)


def get_embedded_model(name: str, catalog: Catalog | None = None) -> EmbeddedModelSpec:
    """The embedded model registered under this name (see :meth:`Catalog.embedded_model`)."""
    return (default_catalog() if catalog is None else catalog).embedded_model(name)


def list_adapters(catalog: Catalog | None = None) -> tuple[Registration[AdapterSpec], ...]:
    """Every usable adapter with the plugin that registered it, sorted by name."""
    return _sorted((default_catalog() if catalog is None else catalog).adapters)


def list_methods(catalog: Catalog | None = None) -> tuple[Registration[MethodSpec], ...]:
    """Every usable explanation method with the plugin that registered it, sorted by name."""
    return _sorted((default_catalog() if catalog is None else catalog).methods)


def list_embedded_models(
    catalog: Catalog | None = None,
) -> tuple[Registration[EmbeddedModelSpec], ...]:
    """Every usable embedded model with the plugin that registered it, sorted by name."""
    return _sorted((default_catalog() if catalog is None else catalog).embedded_models)


def _sorted(table: Any) -> tuple[Any, ...]:
    return tuple(table[name] for name in sorted(table))


@attrs.frozen(kw_only=True)
class InventoryRow:
    """One row of ``dexar plugins``: a plugin, or one thing a plugin registered.

    Attributes:
        name: the plugin's entry-point name, or the adapter, method or model name.
        kind: ``"plugin"``, ``"adapter"``, ``"method"`` or ``"embedded-model"``.
        distribution: the distribution it comes from.
        version: that distribution's version.
        status: ``"ok"``, ``"failed"`` (the plugin was skipped), ``"conflict"``
            (another plugin claims the same name) or ``"overlaps"`` (an adapter serving
            a model type or class another adapter serves too: usable, but only one of
            them is chosen for such a model; see :func:`adapter_overlaps`).
        error: what is wrong, or for ``"overlaps"`` what is shared and which one wins;
            empty when the status is ``"ok"``.
        serves: for an adapter, the transformers model types it serves (``config.json``'s
            ``model_type``), else empty.
    """

    name: str
    kind: str
    distribution: str
    version: str
    status: str = "ok"
    error: str = ""
    serves: tuple[str, ...] = ()


def plugin_inventory(catalog: Catalog | None = None) -> tuple[InventoryRow, ...]:
    """Every plugin and everything it registered, then every plugin that failed to load."""
    catalog = default_catalog() if catalog is None else catalog
    overlaps: dict[str, list[AdapterOverlap]] = {}
    for overlap in adapter_overlaps(catalog):
        for claim in overlap.claims:
            overlaps.setdefault(claim.name, []).append(overlap)
    rows: list[InventoryRow] = []
    for plugin in catalog.plugins:
        distribution, version = plugin.distribution, plugin.version
        rows.append(
            InventoryRow(
                name=plugin.name, kind="plugin", distribution=distribution, version=version
            )
        )
        registered: list[tuple[str, str, tuple[str, ...]]] = [
            ("adapter", spec.name, tuple(spec.model_types)) for spec in plugin.adapters
        ]
        registered += [("method", spec.name, ()) for spec in plugin.methods]
        registered += [("embedded-model", spec.name, ()) for spec in plugin.embedded_models]
        for kind, name, serves in registered:
            conflict = catalog.conflict(kind, name)
            shared = overlaps.get(name, []) if kind == "adapter" else []
            if conflict is not None:
                status, error = "conflict", conflict.message
            elif shared:
                status, error = "overlaps", " ".join(overlap.message for overlap in shared)
            else:
                status, error = "ok", ""
            rows.append(
                InventoryRow(
                    name=name,
                    kind=kind,
                    distribution=distribution,
                    version=version,
                    status=status,
                    error=error,
                    serves=serves,
                )
            )
    rows.extend(
        InventoryRow(
            name=failure.name,
            kind="plugin",
            distribution=failure.distribution,
            version=failure.version,
            status="failed",
            error=failure.error,
        )
        for failure in catalog.failures
    )
    return tuple(rows)


@attrs.frozen(kw_only=True)
class AdapterOverlap:
    """Several usable adapters serving one model type or model class.

    Attributes:
        served: what they share, e.g. ``"model type 'llava'"``.
        claims: the adapters' registrations, the one chosen first.
    """

    served: str
    claims: tuple[Registration[AdapterSpec], ...]

    @property
    def message(self) -> str:
        """Who serves what, which one is chosen and why."""
        ranked = [(claim.spec.priority, claim.name, claim) for claim in self.claims]
        served_by = " and ".join(_origin(claim) for claim in self.claims)
        return (
            f"{self.served} is served by {served_by}; {self.claims[0].name!r} is chosen "
            f"because {_why_first(ranked)}."
        )


def adapter_overlaps(catalog: Catalog | None = None) -> tuple[AdapterOverlap, ...]:
    """Every model type and model class that more than one usable adapter serves."""
    catalog = default_catalog() if catalog is None else catalog
    served: dict[str, list[Registration[AdapterSpec]]] = {}
    for registration in catalog.adapters.values():
        for model_type in registration.spec.model_types:
            served.setdefault(f"model type {model_type!r}", []).append(registration)
        for class_name in registration.spec.architectures:
            served.setdefault(f"model class {class_name!r}", []).append(registration)
    return tuple(
        AdapterOverlap(
            served=what,
            claims=tuple(sorted(claims, key=lambda c: (-c.spec.priority, c.name))),
        )
        for what, claims in sorted(served.items())
        if len(claims) > 1
    )


def plugin_of_error(error: BaseException) -> str | None:
    """The plugin whose code raised ``error``, named with its distribution; None for core.

    The traceback is read from the raising frame outwards; the first frame in a module
    of a ``dexar`` entry point (an adapter package, a method plugin) names the plugin,
    so a bug inside torch called by an adapter is still the adapter's to look at.
    """
    import importlib.metadata
    import traceback

    owners: dict[str, tuple[str, str, str]] = {}
    for entry_point in importlib.metadata.entry_points(group="dexar"):
        top = entry_point.module.split(".")[0]
        dist = entry_point.dist
        owners.setdefault(
            top,
            (
                entry_point.name,
                dist.metadata["Name"] if dist is not None else "unknown",
                dist.version if dist is not None else "?",
            ),
        )
    for frame, _ in reversed(list(traceback.walk_tb(error.__traceback__))):
        module = str(frame.f_globals.get("__name__", ""))
        owner = owners.get(module.split(".")[0])
        if owner is not None:
            name, distribution, version = owner
            return f"plugin {name!r} ({distribution} {version}, in {module})"
    return None
