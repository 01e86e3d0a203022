"""Score a trained model: greedy answers to benchmark items, exact match per kind."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dexar_core.datasets.shapes import KINDS, ShapesItem


def evaluate(
    model: Any,
    processor: Any,
    format_prompt: Callable[[str], str],
    dataset: Iterable[ShapesItem],
    *,
    batch_size: int = 64,
    max_new_tokens: int = 40,
) -> dict[str, float]:
    """Answer every item by greedy generation and score exact match per kind.

    Args:
        model: a generative vision-language model in eval mode.
        processor: its processor (``images=``, ``text=`` call, left padding).
        format_prompt: turns a question into the model's prompt.
        dataset: the items to answer.
        batch_size: items generated together.
        max_new_tokens: generation limit (a three-object caption needs about 25).

    Returns:
        Accuracy in [0, 1] per question kind present, in :data:`KINDS` order, plus
        ``"all"`` over every item.
    """
    import torch

    items = sorted(dataset, key=lambda item: KINDS.index(item.kind))
    correct: dict[str, list[bool]] = {}
    with torch.no_grad():
        for first in range(0, len(items), batch_size):
            chunk = items[first : first + batch_size]
            answers = generate_answers(model, processor, format_prompt, chunk, max_new_tokens)
            for item, answer in zip(chunk, answers, strict=True):
                correct.setdefault(item.kind, []).append(answer == item.answer)
    scores = {kind: sum(hits) / len(hits) for kind, hits in correct.items()}
    scores = {kind: scores[kind] for kind in KINDS if kind in scores}
    scores["all"] = sum(sum(hits) for hits in correct.values()) / len(items)
    return scores


def generate_answers(
    model: Any,
    processor: Any,
    format_prompt: Callable[[str], str],
    items: Sequence[ShapesItem],
    max_new_tokens: int = 40,
) -> list[str]:
    """Greedy answers of ``model`` to the items' questions, decoded and stripped."""
    # An encoder-decoder's output is the decoder's tokens only, its prompt right-padded.
    encoder_decoder = bool(model.config.get_text_config().is_encoder_decoder)
    inputs = processor(
        images=[item.image for item in items],
        text=[format_prompt(item.question) for item in items],
        padding=True,
        padding_side="right" if encoder_decoder else "left",
        return_tensors="pt",
    ).to(model.device)
    generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new_tokens = generated if encoder_decoder else generated[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
