"""dexar-paligemma: a third-party dexar adapter for PaliGemma, registered by entry point.

``pyproject.toml`` declares this module under ``[project.entry-points.dexar]``; dexar
imports it and calls its hooks, which hand over what ``dexar_plugin.toml`` declares.
Nothing heavy is imported here.
"""

from dexar_plugins import manifest_hooks

__version__ = "0.1.0"

# --8<-- [start:hook]
dexar_adapters, dexar_embedded_models = manifest_hooks(__name__)
# --8<-- [end:hook]
