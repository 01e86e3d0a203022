"""Published checkpoint layouts that transformers 5 no longer reads as they were meant.

Checkpoints on the hub, and fine-tunes saved from them by older transformers versions,
carry files in the forms of the day. Some of those forms transformers 5 still loads but
misreads, or refuses with an error that names the wrong cause:

* a LLaVA ``processor_config.json`` without ``patch_size`` (older snapshots, and what
  transformers' own LLaVA conversion script writes): the processor cannot expand
  ``<image>`` and fails with a ``TypeError``;
* one without ``num_additional_image_tokens`` (the mid-2024 form): transformers 5 takes
  0, so a CLIP tower's CLS feature is not counted and every image gets one token too few;
* a BLIP-2 ``config.json`` without ``image_token_index`` (before 2024), with a processor
  that writes no image tokens: transformers 5 silently drops the query features;
* a Qwen2.5-VL ``preprocessor_config.json`` naming ``Qwen2_5_VLImageProcessor``, a class
  transformers 5 dropped for ``Qwen2VLImageProcessor``;
* Florence-2 in Microsoft's original remote-code format, which the native
  ``Florence2ForConditionalGeneration`` cannot read at all.

This module mends the first four from what the checkpoint itself states (the vision
config, the vision tower's kind, the tokenizer), each mend logged on the ``dexar``
logger, and refuses the last with the conversion to use. It reads the files as written,
since a loaded processor or config has already filled the missing fields with defaults.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dexar_core.errors import CheckpointError

logger = logging.getLogger("dexar")

DROPPED_IMAGE_PROCESSORS: dict[str, str] = {
    "Qwen2_5_VLImageProcessor": "Qwen2VLImageProcessor",
    "Qwen2_5_VLImageProcessorFast": "Qwen2VLImageProcessor",
}
"""Image processor class names written by transformers 4.x that 5 dropped, and the
class that replaced each (Qwen2.5-VL always shared Qwen2-VL's image processing)."""

CLS_TOWERS: dict[str, int] = {"clip_vision_model": 1, "siglip_vision_model": 0}
"""Vision tower kinds and how many features they emit besides the patches (CLIP's CLS)."""

FLORENCE2_CONVERTED = (
    "florence-community/Florence-2-base, -base-ft, -large or -large-ft (the same weights "
    "converted to transformers' native format), or convert your own checkpoint with "
    "transformers' script src/transformers/models/florence2/"
    "convert_florence2_original_pytorch_to_hf.py"
)


def published_file(path: str, filename: str) -> dict[str, Any] | None:
    """One JSON file of a checkpoint folder or a cached hub id, as written.

    None when it is absent or no JSON object: transformers' own loading then reports
    the broken file.
    """
    folder = Path(path)
    if folder.is_dir():
        resolved: str | None = str(folder / filename) if (folder / filename).is_file() else None
    else:
        from transformers.utils import cached_file

        try:
            resolved = cached_file(
                path,
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except OSError:
            return None
    if resolved is None:
        return None
    try:
        content = json.loads(Path(resolved).read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def refuse_unreadable_format(path: str) -> None:
    """Refuse a checkpoint format dexar cannot read, naming the conversion to use.

    Raises:
        CheckpointError: for Florence-2 in the original remote-code format.
    """
    config = published_file(path, "config.json")
    if not config:
        return
    vision = config.get("vision_config") or {}
    remote_code = "auto_map" in config or vision.get("model_type") == "davit"
    if config.get("model_type") == "florence2" and remote_code:
        raise CheckpointError(
            f"{path!r} is Florence-2 in Microsoft's original remote-code format "
            "(config.json has an auto_map and a 'davit' vision config), which transformers' "
            "native Florence2ForConditionalGeneration cannot read. Use "
            f"{FLORENCE2_CONVERTED}."
        )


@contextlib.contextmanager
def processor_folder(path: str) -> Iterator[str]:
    """A folder ``AutoProcessor.from_pretrained`` can read for this checkpoint.

    The checkpoint itself when its processor files name classes transformers knows;
    otherwise a temporary view of it (links to every file) whose
    ``preprocessor_config.json`` names the successor of each dropped class.
    """
    preprocessor = published_file(path, "preprocessor_config.json")
    dropped = (preprocessor or {}).get("image_processor_type")
    if dropped not in DROPPED_IMAGE_PROCESSORS:
        yield path
        return
    successor = DROPPED_IMAGE_PROCESSORS[dropped]
    source = _checkpoint_folder(path)
    logger.info(
        "%s: preprocessor_config.json names %s, which transformers 5 dropped; reading it "
        "as %s, its successor.",
        path,
        dropped,
        successor,
    )
    with tempfile.TemporaryDirectory(prefix="dexar-processor-") as view:
        for entry in source.iterdir():
            if entry.name != "preprocessor_config.json":
                os.symlink(entry.resolve(), Path(view) / entry.name)
        mended = {**(preprocessor or {}), "image_processor_type": successor}
        (Path(view) / "preprocessor_config.json").write_text(json.dumps(mended, indent=2))
        yield view


def _checkpoint_folder(path: str) -> Path:
    """The folder holding a checkpoint's files (the hub cache's snapshot for a hub id)."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    from transformers.utils import cached_file

    resolved = cached_file(path, "preprocessor_config.json")
    if resolved is None:
        raise CheckpointError(f"{path!r}: the processor files are not in the local cache.")
    return Path(resolved).parent


def mend_loaded(path: str, model: Any, processor: Any) -> tuple[str, ...]:
    """Fill in what the published files leave out and transformers 5 no longer infers.

    Changes ``model.config`` and ``processor`` in place.

    Returns:
        One sentence per mend made (also logged); empty when nothing was missing.

    Raises:
        CheckpointError: when a missing field cannot be filled from the checkpoint.
    """
    model_type = getattr(model.config, "model_type", None)
    if model_type == "llava":
        return _mend_llava(path, model.config, processor)
    if model_type == "blip-2":
        return _mend_blip2(path, model.config, processor)
    return ()


def _mend_llava(path: str, config: Any, processor: Any) -> tuple[str, ...]:
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
    return _logged(path, notes)


def _mend_blip2(path: str, config: Any, processor: Any) -> tuple[str, ...]:
    notes = []
    if config.image_token_index is None:
        tokenizer = processor.tokenizer
        # Blip2Processor adds '<image>' to a tokenizer without one, after the text
        # vocabulary, where the 2024 update of the published checkpoints put it
        token = getattr(processor.image_token, "content", processor.image_token)
        image_token_id = tokenizer.convert_tokens_to_ids(token)
        vocab_size = int(config.get_text_config().vocab_size)
        if image_token_id is None or image_token_id >= vocab_size:
            raise CheckpointError(
                f"{path!r}: config.json gives no image_token_index (the pre-2024 BLIP-2 "
                f"form) and the tokenizer's {token!r} has id {image_token_id}, outside the "
                f"language model's {vocab_size} embeddings. Save the checkpoint again from "
                "the current Salesforce/blip2-* processor and config, which hold it."
            )
        config.image_token_index = int(image_token_id)
        notes.append(
            f"config.json gives no image_token_index (pre-2024 form); took {token!r} = "
            f"{image_token_id} from the tokenizer"
        )
    if processor.num_query_tokens is None:
        processor.num_query_tokens = int(config.num_query_tokens)
        notes.append(
            f"processor_config.json gives no num_query_tokens; took {config.num_query_tokens} "
            "from the config"
        )
    return _logged(path, notes)


def _logged(path: str, notes: list[str]) -> tuple[str, ...]:
    for note in notes:
        logger.info("%s: %s.", path, note)
    return tuple(notes)
