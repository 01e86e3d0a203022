"""Several prompts through a decoder-only model together: one generate, one prefill.

A batch of items (each its own images, prompt and answer) runs the parts of an
explanation that need no grad through the model at once: the vision tower, the prompt's
prefill and, for free runs, the whole generation. The prompts are padded on the left,
as ``generate`` expects: the attention mask hides the padding from every real position
and ``generate`` numbers each prompt's positions from its first real token, so every
item sees the keys, values and positions it sees alone. Each item's part of the
batch's cache (its row, without its padding) is then its own
:class:`~dexar_core.records.PromptPrefill`, from which its answer rows are explained
with grad, one item at a time (:mod:`dexar_core.engine.prompt_cache`).

A given answer's batch runs ``generate`` for one new token, which is the prefill and
nothing more: the new token is dropped and never enters the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dexar_core.engine.prompt_cache import kept_prefill
from dexar_core.errors import InputError
from dexar_core.records import LoadedModel, PreparedPrompt, PromptPrefill


class UnbatchableInputs(Exception):
    """The items' inputs cannot form one batch (other keys, or visual inputs of other
    shapes than the processor's batches take); they are explained one at a time."""


def left_padded(
    prepared: Sequence[PreparedPrompt], padded_keys: Sequence[str], pad_token_id: int
) -> tuple[dict[str, Any], list[int]]:
    """One batch of the items' prompt inputs, and how many padding positions each got.

    Args:
        prepared: the items' prepared prompts (each a batch of one).
        padded_keys: the inputs over the token sequence, padded on the left (the token
            ids with ``pad_token_id``, the others with 0: the attention mask's 0 hides
            the padding); every other tensor is concatenated along its first axis, as
            the processor batches pixels and grids.
        pad_token_id: the token written in the padding.

    Raises:
        UnbatchableInputs: the items have other input names, or tensors that do not
            concatenate.
    """
    names = list(prepared[0].inputs)
    if any(list(item.inputs) != names for item in prepared):
        raise UnbatchableInputs("the items' inputs have other names")
    length = max(int(item.inputs["input_ids"].shape[1]) for item in prepared)
    pads = [length - int(item.inputs["input_ids"].shape[1]) for item in prepared]
    batch: dict[str, Any] = {}
    for name in names:
        values = [item.inputs[name] for item in prepared]
        if name in padded_keys:
            fill = pad_token_id if name == "input_ids" else 0
            batch[name] = torch.cat(
                [
                    torch.nn.functional.pad(value, (pad, 0), value=fill)
                    for value, pad in zip(values, pads, strict=True)
                ]
            )
        elif isinstance(values[0], torch.Tensor):
            if any(value.shape[1:] != values[0].shape[1:] for value in values):
                raise UnbatchableInputs(f"the items' {name} have other shapes")
            batch[name] = torch.cat(values)
        elif all(value == values[0] for value in values):
            batch[name] = values[0]
        else:
            raise UnbatchableInputs(f"the items' {name} differ")
    return batch, pads


def batched_free_runs(
    adapter: Any,
    loaded: LoadedModel,
    prepared: Sequence[PreparedPrompt],
    max_new_tokens: int,
    *,
    keep_prefill: bool,
) -> list[tuple[list[int], PromptPrefill | None]]:
    """Each item's generated answer ids and kept prefill, from one ``generate``.

    Args:
        adapter: the items' :class:`~dexar_core.hf.decoder_only.HFDecoderOnlyAdapter`.
        loaded: the model.
        prepared: the items' prepared prompts.
        max_new_tokens: the longest answer (for a given answer's prefill: 1).
        keep_prefill: keep each item's part of the cache (else None in its place).

    Raises:
        UnbatchableInputs: see :func:`left_padded`.
    """
    from transformers import DynamicCache

    pad_token_id = _pad_token_id(adapter, loaded)
    batch, pads = left_padded(prepared, adapter.padded_keys, pad_token_id)
    cache = DynamicCache() if keep_prefill else None
    suppressed = sorted(set().union(*(item.facts.image_token_ids for item in prepared)))
    sequences = adapter.greedy_sequences(
        loaded,
        batch,
        max_new_tokens,
        suppress_tokens=suppressed,
        pad_token_id=pad_token_id,
        **({} if cache is None else {"cache": cache}),
    )
    prompt_length = int(batch["input_ids"].shape[1])
    runs: list[tuple[list[int], PromptPrefill | None]] = []
    for row, (item, pad) in enumerate(zip(prepared, pads, strict=True)):
        answer = adapter.until_stop(loaded, sequences[row][prompt_length:])
        prefill = None if cache is None else kept_prefill(cache, item.inputs, row=row, offset=pad)
        runs.append((answer, prefill))
    return runs


def _pad_token_id(adapter: Any, loaded: LoadedModel) -> int:
    """The padding token: the tokenizer's, else the generation config's, else EOS."""
    config = adapter.generation_config(loaded.model)
    for value in (loaded.tokenizer.pad_token_id, config.pad_token_id, config.eos_token_id):
        if isinstance(value, (list, tuple)) and value:
            return int(value[0])
        if isinstance(value, int):
            return value
    raise InputError(
        f"the {adapter.name} tokenizer and generation config name no padding or "
        "end-of-sequence token, so prompts of other lengths cannot form a batch; "
        "explain with batch_size=1."
    )


def batch_units(
    adapter: Any,
    loaded: LoadedModel,
    prepared: Sequence[PreparedPrompt],
    answers: Sequence[str | None],
    max_new_tokens: int,
) -> list[Any]:
    """``ExplainedUnits`` (or the item's ``InputError``) per item, free runs together and
    given answers' prefills together. See :meth:`ModelAdapter.batched_units`.

    Raises:
        UnbatchableInputs: see :func:`left_padded`.
    """
    results: list[Any] = [None] * len(prepared)
    given: dict[int, list[int]] = {}
    for index, (item, answer) in enumerate(zip(prepared, answers, strict=True)):
        if answer is not None:
            try:
                given[index] = adapter.given_answer_ids(loaded, item, answer)
            except InputError as error:
                results[index] = error
    free = [index for index, answer in enumerate(answers) if answer is None]
    # A cache row is the prompt's prefill only where the adapter's explanation continues
    # from one and generation keeps no beams; a given answer's batch runs only for that.
    keep = bool(adapter.prompt_cache) and single_beam(loaded)
    groups = [(free, max_new_tokens, True)]
    if keep and len(given) > 1:
        groups.append((sorted(given), 1, False))
    else:
        for index, answer_ids in given.items():
            results[index] = adapter.answer_units(loaded, answer_ids, generated=False)
    for indices, new_tokens, generated in groups:
        if not indices:
            continue
        runs = batched_free_runs(
            adapter, loaded, [prepared[i] for i in indices], new_tokens, keep_prefill=keep
        )
        for index, (answer_ids, prefill) in zip(indices, runs, strict=True):
            try:
                results[index] = adapter.answer_units(
                    loaded,
                    answer_ids if generated else given[index],
                    generated=generated,
                    prefill=prefill,
                )
            except InputError as error:
                results[index] = error
    return results


def single_beam(loaded: LoadedModel) -> bool:
    """Whether the model's free runs decode one sequence (no beam search)."""
    return int(getattr(loaded.model.generation_config, "num_beams", 1) or 1) == 1
