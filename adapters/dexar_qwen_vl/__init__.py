"""Built-in Qwen2-VL / Qwen2.5-VL / Qwen3-VL adapter, registered through the ``dexar``
entry point.

What it registers is declared in ``dexar_plugin.toml``.
"""

from dexar_plugins import manifest_hooks

dexar_adapters, dexar_embedded_models = manifest_hooks(__name__)
