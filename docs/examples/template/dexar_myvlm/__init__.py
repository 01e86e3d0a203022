"""dexar-myvlm: registers the MyVLM adapter through the ``dexar`` entry point.

Keep this module light: dexar imports it for ``dexar plugins`` and ``--help``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dexar_core.values import AdapterSpec
from dexar_plugins import hookimpl


def _adapter() -> Any:
    from dexar_myvlm.adapter import MyVlmAdapter

    return MyVlmAdapter()


def conformance_case() -> Any:
    """The tiny model, image and prompt the conformance suite checks."""
    from dexar_myvlm.tiny import tiny_case

    return tiny_case()


@hookimpl
def dexar_adapters() -> Iterable[AdapterSpec]:
    """The MyVLM adapter."""
    return (
        AdapterSpec(
            name="myvlm",
            model_types=("myvlm",),  # config.model_type values served
            architectures=("MyVlmForConditionalGeneration",),  # config.architectures
            factory=_adapter,
            description="MyVLM (MyVlmForConditionalGeneration)",
            conformance=conformance_case,
        ),
    )
