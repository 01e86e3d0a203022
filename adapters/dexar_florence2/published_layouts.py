"""The published Florence-2 format dexar cannot read, refused with the conversion to use.

Microsoft's original checkpoints (``microsoft/Florence-2-*``) are in a remote-code
format (``config.json`` with an ``auto_map`` and a ``davit`` vision config) that the
native ``Florence2ForConditionalGeneration`` cannot read at all; registered as the
florence2 ``AdapterSpec.refuse_layout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FLORENCE2_CONVERTED = (
    "florence-community/Florence-2-base, -base-ft, -large or -large-ft (the same weights "
    "converted to transformers' native format), or convert your own checkpoint with "
    "transformers' script src/transformers/models/florence2/"
    "convert_florence2_original_pytorch_to_hf.py"
)


def refuse_remote_code_florence2(path: str, config: Mapping[str, Any]) -> str | None:
    """Why a Florence-2 ``config.json`` in the remote-code format cannot be read; None
    for any other config."""
    vision = config.get("vision_config") or {}
    remote_code = "auto_map" in config or vision.get("model_type") == "davit"
    if config.get("model_type") == "florence2" and remote_code:
        return (
            f"{path!r} is Florence-2 in Microsoft's original remote-code format "
            "(config.json has an auto_map and a 'davit' vision config), which transformers' "
            "native Florence2ForConditionalGeneration cannot read. Use "
            f"{FLORENCE2_CONVERTED}."
        )
    return None
