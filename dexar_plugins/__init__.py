"""The dexar plugin system: hooks, entry-point loading, and the adapter registry.

Adapter packages declare what they register in a manifest and hand pluggy its hooks
with :func:`manifest_hooks` (or write ``@hookimpl`` functions themselves); callers look
things up with :func:`resolve_adapter`, :func:`get_method` and
:func:`get_embedded_model`, or build their own :class:`Catalog` with
:func:`build_catalog`.
"""

from dexar_plugins.hookspecs import hookimpl, hookspec
from dexar_plugins.loading import (
    LoadedPlugin,
    LoadedPlugins,
    PluginFailure,
    PluginSettings,
    PluginWarning,
    load_plugins,
)
from dexar_plugins.manager import (
    Catalog,
    NameConflict,
    Registration,
    build_catalog,
    default_catalog,
    reset_default_catalog,
)
from dexar_plugins.manifest import manifest_hooks
from dexar_plugins.registry import (
    AdapterOverlap,
    InventoryRow,
    adapter_overlaps,
    get_adapter,
    get_embedded_model,
    get_method,
    list_adapters,
    list_embedded_models,
    list_methods,
    plugin_inventory,
    plugin_of_error,
    resolve_adapter,
)

__all__ = [
    "AdapterOverlap",
    "Catalog",
    "InventoryRow",
    "LoadedPlugin",
    "LoadedPlugins",
    "NameConflict",
    "PluginFailure",
    "PluginSettings",
    "PluginWarning",
    "Registration",
    "adapter_overlaps",
    "build_catalog",
    "default_catalog",
    "get_adapter",
    "get_embedded_model",
    "get_method",
    "hookimpl",
    "hookspec",
    "list_adapters",
    "list_embedded_models",
    "list_methods",
    "load_plugins",
    "manifest_hooks",
    "plugin_inventory",
    "plugin_of_error",
    "reset_default_catalog",
    "resolve_adapter",
]
