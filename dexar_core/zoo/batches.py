"""Training batches: prompt + answer tokens, with labels on the answer only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dexar_core.datasets.shapes import ShapesItem
from dexar_core.errors import InputError


def training_batch(
    processor: Any,
    format_prompt: Callable[[str], str],
    items: Sequence[ShapesItem],
    *,
    position_ids: bool = True,
    encoder_decoder: bool = False,
) -> dict[str, Any]:
    """Tokenise prompt + answer + end token; label only the answer and end tokens."""
    tokenizer = processor.tokenizer
    if encoder_decoder:
        return encoder_decoder_batch(processor, format_prompt, items)
    texts = [f"{format_prompt(item.question)} {item.answer}{tokenizer.eos_token}" for item in items]
    batch = processor(
        images=[item.image for item in items], text=texts, padding=True, return_tensors="pt"
    )
    input_ids = batch["input_ids"]
    labels = input_ids.new_full(input_ids.shape, -100)
    for row, item in enumerate(items):
        answer_ids = [*tokenizer(item.answer, add_special_tokens=False)["input_ids"]]
        answer_ids.append(tokenizer.eos_token_id)
        tail = input_ids[row, -len(answer_ids) :].tolist()
        if tail != answer_ids:
            raise InputError(
                f"dexar_core.zoo.train: the tokenised answer {item.answer!r} is not the tail "
                f"of its training text; the tokenizer must be word-level and padding left."
            )
        labels[row, -len(answer_ids) :] = input_ids[row, -len(answer_ids) :]
    if position_ids:
        # Positions count real tokens only, as generate() does with left padding.
        batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    batch["labels"] = labels
    return dict(batch)


def encoder_decoder_batch(
    processor: Any, format_prompt: Callable[[str], str], items: Sequence[ShapesItem]
) -> dict[str, Any]:
    """The prompt as the encoder's input; the answer and end token as the labels."""
    tokenizer = processor.tokenizer
    batch = processor(
        images=[item.image for item in items],
        text=[format_prompt(item.question) for item in items],
        padding=True,
        padding_side="right",
        return_tensors="pt",
    )
    answers = [tokenizer(item.answer, add_special_tokens=False)["input_ids"] for item in items]
    longest = max(len(ids) for ids in answers) + 1
    labels = batch["input_ids"].new_full((len(items), longest), -100)
    for row, ids in enumerate(answers):
        labels[row, : len(ids) + 1] = labels.new_tensor([*ids, tokenizer.eos_token_id])
    batch["labels"] = labels
    return dict(batch)


LOSS_WEIGHTINGS = {
    "token": "averaged over all of them (transformers' token mean)",
    "item": "averaged over each item's tokens first, so every item weighs the same",
}
"""How the loss weighs the answer tokens, with the model card's wording of each."""


def item_mean_loss(logits: Any, labels: Any, *, shifted: bool) -> Any:
    """Cross-entropy averaged over each item's answer tokens, then over the items.

    The token mean that transformers computes lets a twelve-word caption weigh twelve
    times a one-word answer; here every item weighs the same, so the question kinds
    whose answer is one word (colour, shape, position) are not drowned by captions.

    Args:
        logits: ``(batch, length, vocab)`` scores.
        labels: ``(batch, length)`` target ids, ``-100`` where no loss is taken.
        shifted: whether position ``i`` predicts label ``i + 1`` (decoder-only models);
            False where logits and labels are aligned (an encoder-decoder's decoder).
    """
    import torch.nn.functional as F

    if shifted:
        logits, labels = logits[:, :-1], labels[:, 1:]
    per_token = F.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none"
    )
    counted = (labels != -100).sum(dim=1).clamp(min=1)
    return (per_token.sum(dim=1) / counted).mean()
