"""Built-in Gemma 3 adapter, registered through the ``dexar`` entry point like any plugin.

What it registers is declared in ``dexar_plugin.toml``.
"""

from dexar_plugins import manifest_hooks

dexar_adapters, dexar_embedded_models = manifest_hooks(__name__)
