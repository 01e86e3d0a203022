"""The published BLIP-2 layout transformers 5 misreads, mended.

A ``config.json`` without ``image_token_index`` (before 2024), with a processor that
writes no image tokens: transformers 5 silently drops the query features. The index is
taken from the tokenizer, where ``Blip2Processor`` puts ``<image>``; registered as the
blip2 ``AdapterSpec.mend_layout``.
"""

from __future__ import annotations

from typing import Any

from dexar_core.errors import CheckpointError


def mend_blip2_layout(path: str, model: Any, processor: Any) -> list[str]:
    """Fill in the image token and query count the published BLIP-2 files leave out.

    Returns:
        One sentence per mend made; empty for a complete layout or another model.

    Raises:
        CheckpointError: the tokenizer's image token lies outside the language model's
            embeddings.
    """
    config = model.config
    if getattr(config, "model_type", None) != "blip-2":
        return []
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
    return notes
