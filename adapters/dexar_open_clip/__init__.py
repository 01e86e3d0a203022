"""Built-in open_clip adapter: explains contrastive image-text similarity of ViT CLIPs.

Registered through the ``dexar`` entry point like any plugin, with what it registers
declared in ``dexar_plugin.toml``; its models are explained with ``dexar_core.explain``
(the units are the prompts). Importing this package stays light (no torch).
"""

from pathlib import Path

from dexar_plugins import manifest_hooks

CHECKPOINTS = Path(__file__).parent / "checkpoints"
"""Where the embedded checkpoints live."""

dexar_adapters, dexar_embedded_models = manifest_hooks(__name__)
