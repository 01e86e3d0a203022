"""The published LLaVA-1.5 processor layouts transformers 5 misreads, mended.

* a ``processor_config.json`` without ``patch_size`` (older snapshots, and what
  transformers' own LLaVA conversion script writes): the processor cannot expand
  ``<image>`` and fails with a ``TypeError``;
* one without ``num_additional_image_tokens`` (the mid-2024 form): transformers 5 takes
  0, so a CLIP tower's CLS feature is not counted and every image gets one token too few;
* one without ``vision_feature_select_strategy``: the processor has none.

Each is filled in from what the checkpoint itself states (the vision config and the
vision tower's kind), registered as the llava ``AdapterSpec.mend_layout``.
"""

from __future__ import annotations

from typing import Any

from dexar_core.errors import CheckpointError
from dexar_core.hf.published_layouts import published_file

CLS_TOWERS: dict[str, int] = {"clip_vision_model": 1, "siglip_vision_model": 0}
"""Vision tower kinds and how many features they emit besides the patches (CLIP's CLS)."""


def mend_llava_layout(path: str, model: Any, processor: Any) -> list[str]:
    """Fill in the LLaVA processor fields the published files leave out.

    Returns:
        One sentence per mend made; empty for a complete layout or another model.

    Raises:
        CheckpointError: no extra-token count is written and the tower's kind is unknown.
    """
    config = model.config
    if getattr(config, "model_type", None) != "llava":
        return []
    written = published_file(path, "processor_config.json") or {}
    notes = []
    if written.get("patch_size") is None:
        processor.patch_size = int(config.vision_config.patch_size)
        notes.append(
            f"processor_config.json gives no patch_size; took {processor.patch_size} from "
            "the vision config"
        )
    if "num_additional_image_tokens" not in written:
        tower = getattr(config.vision_config, "model_type", None)
        if tower not in CLS_TOWERS:
            raise CheckpointError(
                f"{path!r}: processor_config.json gives no num_additional_image_tokens and "
                f"the vision tower is {tower!r}, for which dexar does not know how many "
                "features it emits besides the patches. Add num_additional_image_tokens to "
                "processor_config.json (1 if the tower emits a CLS feature, else 0)."
            )
        processor.num_additional_image_tokens = CLS_TOWERS[tower]
        notes.append(
            f"processor_config.json gives no num_additional_image_tokens; took "
            f"{CLS_TOWERS[tower]} from the {tower} tower (its CLS feature, which the "
            f"{config.vision_feature_select_strategy!r} strategy "
            f"{'drops' if config.vision_feature_select_strategy == 'default' else 'keeps'})"
        )
    if processor.vision_feature_select_strategy is None:
        processor.vision_feature_select_strategy = config.vision_feature_select_strategy
        notes.append(
            "processor_config.json gives no vision_feature_select_strategy; took the "
            f"model's {config.vision_feature_select_strategy!r}"
        )
    return notes
