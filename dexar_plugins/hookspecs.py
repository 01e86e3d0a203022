"""Every hook a dexar plugin can implement.

Hooks only *register* things: each returns frozen spec records (``dexar_core.values``)
whose factories build the objects that hold the behaviour. A plugin is a module (or any
object) exposed under the ``dexar`` entry-point group whose functions carry
:data:`hookimpl`::

    from dexar_plugins import hookimpl

    @hookimpl
    def dexar_adapters():
        return [AdapterSpec(name="myvlm", model_types=("myvlm",), factory=MyAdapter)]

A package may instead declare its adapters and embedded models as data in a manifest
and bind the hooks :func:`dexar_plugins.manifest.manifest_hooks` makes from it.

The signatures here are the contract; ``docs/plugins.md`` repeats each one and a test
keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from dexar_core.values import AdapterSpec, EmbeddedModelSpec, MethodSpec

PROJECT_NAME = "dexar"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

# A hook specification is a signature and a docstring: pluggy never runs its body, hence
# the empty bodies mypy is told to accept.


@hookspec
def dexar_adapters() -> Iterable[AdapterSpec]:  # type: ignore[empty-body]
    """Register the model adapters this plugin provides.

    Signature: ``dexar_adapters() -> Iterable[AdapterSpec]``.

    Called once per process, when the plugin catalog is first built (the first call to
    ``dexar_plugins.default_catalog()``, ``dexar plugins``, or choosing an adapter for a
    model), right after the plugin is loaded.

    Returns:
        The adapters' specs: each names the adapter, the Hugging Face ``model_type``
        values and model class names it serves, a zero-argument factory returning a
        fresh ``ModelAdapter``, and a priority. Return an empty iterable (or nothing)
        when the plugin has no adapter. Anything that is not an ``AdapterSpec`` makes
        the whole plugin fail to load.
    """


@hookspec
def dexar_methods() -> Iterable[MethodSpec]:  # type: ignore[empty-body]
    """Register the explanation methods this plugin provides.

    Signature: ``dexar_methods() -> Iterable[MethodSpec]``.

    Called once per process, when the plugin catalog is first built. The core registers
    DEX-AR and every baseline through this hook, exactly as a third party would.

    Returns:
        The methods' specs: each names the method, a factory taking the method's options
        as keyword arguments and returning a ``Method``, and whether it needs gradients.
        Anything that is not a ``MethodSpec`` makes the whole plugin fail to load.
    """


@hookspec
def dexar_embedded_models() -> Iterable[EmbeddedModelSpec]:  # type: ignore[empty-body]
    """Register the checkpoints this plugin ships, by the names users type for ``--model``.

    Signature: ``dexar_embedded_models() -> Iterable[EmbeddedModelSpec]``.

    Called once per process, when the plugin catalog is first built.

    Returns:
        The embedded models' specs: each names the checkpoint, its folder in Hugging
        Face format and the adapter that serves it, and may carry its example image and
        prompt, the ``TrainingRecipe`` that reproduces it, and ``default=True`` for the
        model used when none is named (exactly one installed model may say so).
        Anything that is not an ``EmbeddedModelSpec`` makes the whole plugin fail to
        load.
    """
