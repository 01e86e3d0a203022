"""An adapter's own options, given by name: ``Florence2Adapter(through_encoder="rollout")``.

Some adapters take keyword arguments that change how they explain, not how the model
loads: the encoder-decoders' ``through_encoder`` (docs/encoder_decoder.md), BLIP-2's
``projection``. ``load(..., adapter_options={...})`` and the CLI's ``--adapter-option``
build the adapter with them; a name the adapter does not take is refused, naming the
ones it does, before the model loads.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from dexar_core.errors import InputError
from dexar_core.values import ImportReference


def keyword_names(function: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword arguments ``function`` takes; None when it takes any (``**kw``).

    An :class:`~dexar_core.values.ImportReference` is resolved first, so a manifest's
    ``"module:Class"`` factory is read as the class it names.
    """
    target = function.resolve() if isinstance(function, ImportReference) else function
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: no options known
        return frozenset()
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return None
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(parameter.name for parameter in parameters if parameter.kind in keywords)


def make_adapter(name: str, factory: Callable[..., Any], options: Mapping[str, Any]) -> Any:
    """The adapter ``factory`` builds with ``options``, refusing names it does not take.

    Args:
        name: the adapter's registered name, for the message.
        factory: its :attr:`~dexar_plugins.AdapterSpec.factory`.
        options: keyword arguments for the factory; empty for its defaults.

    Raises:
        InputError: an option name the factory does not take; the message names those
            it does. A value the adapter refuses raises the adapter's own error.
    """
    if not options:
        return factory()
    accepted = keyword_names(factory)
    unknown = sorted(set(options) - accepted) if accepted is not None else []
    if unknown:
        offered = (
            f"takes the adapter option(s) {sorted(accepted)}"
            if accepted
            else "takes no adapter options"
        )
        raise InputError(
            f"the {name} adapter {offered}; found {unknown}. Leave them out, or use a model "
            "whose adapter has them (docs/models.md, 'Adapter options')."
        )
    return factory(**options)
