"""dexar-myvlm: registers the MyVLM adapter through the ``dexar`` entry point.

What it registers is declared in ``dexar_plugin.toml``; keep this module light: dexar
imports it for ``dexar plugins`` and ``--help``.
"""

from dexar_plugins import manifest_hooks

dexar_adapters, dexar_embedded_models = manifest_hooks(__name__)
