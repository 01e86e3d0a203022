"""dexar: DEX-AR explanations for autoregressive vision-language models.

The public entry points are re-exported here and imported lazily, so that
``import dexar_core`` stays free of torch and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dexar_core.errors import DexarError

__version__ = "0.1.0"

__all__ = [
    "BatchItem",
    "DexarError",
    "Explanation",
    "Video",
    "__version__",
    "explain",
    "explain_batch",
    "load",
]

if TYPE_CHECKING:
    from dexar_core.api import explain, explain_batch, load
    from dexar_core.explaining import BatchItem
    from dexar_core.explanation import Explanation
    from dexar_core.images import Video

_LAZY = {
    "explain": "dexar_core.api",
    "explain_batch": "dexar_core.api",
    "BatchItem": "dexar_core.explaining",
    "load": "dexar_core.api",
    "Explanation": "dexar_core.explanation",
    "Video": "dexar_core.images",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dexar_core' has no attribute {name!r}")
