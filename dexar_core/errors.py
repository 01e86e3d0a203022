"""The DexarError hierarchy.

Every error the project raises on bad input is a :class:`DexarError`. Its message says
who complained, what was expected, what was found, and what to do next.
"""

from __future__ import annotations


class DexarError(Exception):
    """Base class of every error dexar raises on purpose."""


class InputError(DexarError, ValueError):
    """An argument, file or option given by the caller is not usable."""


class ImageError(InputError):
    """An image file is missing, unreadable or not an image."""


class LayoutError(DexarError, ValueError):
    """A VisualLayout (visual mask, text mask, grids) is inconsistent."""


class PluginError(DexarError):
    """A plugin failed to load, registered a bad hook, or returned a bad value."""


class PluginConflictError(PluginError):
    """Two plugins claim the same adapter, method or embedded-model name."""


class UnsupportedModelError(DexarError):
    """No installed adapter serves this model, or the adapter cannot handle it."""


class MethodError(DexarError):
    """An explanation method cannot run with these options or on this model."""


class CheckpointError(DexarError):
    """A checkpoint folder is missing, incomplete or corrupt."""


class DatasetError(InputError):
    """A dataset name, split or file is unknown or malformed."""


class DexarWarning(UserWarning):
    """Something the caller should know that does not stop the run (mostly unknown tokens).

    The CLI prints it as ``dexar: warning: <message>``.
    """
