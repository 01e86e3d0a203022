"""The prompt once without grad, then only the answer rows with grad (docs/method.md §7).

The explanation differentiates each explained layer's attention rows of the answer
positions, with every layer input detached. The keys and values of the prompt positions
are then constants of the backward: the same numbers ``generate``'s prefill computes.
So, for a decoder whose adapter allows it (``TeacherForcedPass.prompt_inputs``), the
engine runs the prompt once under ``no_grad`` into a KV cache, then the query rows of
each chunk of answer tokens with grad after it. The graph, the saved activations and the
backward grow with the answer length T instead of with the prompt, and a long answer
explained in chunks runs each answer row once (the cache grows chunk by chunk).

The prompt runs whole, its last position included, and the cache is then cut back by
that one position, which the answer pass runs again as its first query row: in a
prefix-LM (PaliGemma) the prompt attends to itself in both directions, so the prompt's
keys and values are only right once the whole prompt has run.

A free run has already run that forward: ``generate``'s prefill is the same no-grad
forward of the same prompt inputs. :func:`kept_prefill` keeps its keys and values
(:class:`~dexar_core.records.PromptPrefill`, on ``ExplainedUnits.prefill``) and
:meth:`PromptCache.start` continues from them, so a free run pays for the prompt, and
the vision tower whose features it consumes, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from dexar_core.errors import DexarError
from dexar_core.records import LoadedModel, PromptPrefill, TeacherForcedPass

_PLACEHOLDER_IDS = ("image_token_id", "image_token_index", "video_token_id")
"""Config attributes naming tokens a forward fills with visual features."""


class PromptCache:
    """The prompt's KV cache, continued over the query rows of one chunk after another.

    Use :meth:`start`; each :meth:`rows` call must cover the tokens right after the
    previous call's.
    """

    def __init__(self, loaded: LoadedModel, forced: TeacherForcedPass, cache: Any) -> None:
        self._module = loaded.adapter.continuation_model(loaded.model)
        self._ids = forced.inputs["input_ids"]
        self._query_rows = forced.query_rows
        self._cache = cache
        self._next = 0

    @classmethod
    def start(
        cls, loaded: LoadedModel, forced: TeacherForcedPass, prefill: PromptPrefill | None = None
    ) -> PromptCache | None:
        """Run the prompt without grad into a fresh cache; None where the full pass must run.

        The full pass runs where the adapter gives no ``prompt_inputs``, where the query
        rows are not consecutive, and where a query row holds a token the forward fills
        with visual features (the continuation gets token ids only). A ``prefill`` that
        generation computed from these very ``prompt_inputs`` fills the cache instead
        of the prompt forward.

        Raises:
            DexarError: the prompt forward filled the cache with another length than the
                prompt's (the adapter's ``prompt_inputs`` and ``query_rows`` disagree).
        """
        from transformers import DynamicCache

        rows, ids = forced.query_rows, forced.inputs.get("input_ids")
        if (
            forced.prompt_inputs is None
            or ids is None
            or ids.shape[-1] != forced.key_length
            or rows[0] < 1
            or list(rows) != list(range(rows[0], rows[0] + len(rows)))
            or _holds_placeholders(loaded.model.config, ids[:, rows[0] : rows[-1] + 1])
        ):
            return None
        if prefill is not None and prefill.computed_from(forced.prompt_inputs):
            # A cache of its own over the prefill's tensors: the answer rows append to it,
            # and the prefill stays whole for another explanation of the same units.
            cache = DynamicCache(ddp_cache_data=prefill.keys_values)
            loaded.adapter.resume_prompt(loaded, forced.prompt_inputs)
        else:
            # No config: every layer a plain DynamicLayer that keeps all keys exactly (the
            # sliding-window layers of a config-built cache drop keys the leaves must span).
            cache = DynamicCache()
            inputs = dict(forced.prompt_inputs)
            inputs.update(cache=cache, use_cache=True, logits_to_keep=1)
            with torch.no_grad():
                loaded.model(**inputs)
        if cache.get_seq_length() != rows[0] + 1:
            raise DexarError(
                f"the adapter {loaded.adapter.name!r} gave prompt_inputs of "
                f"{cache.get_seq_length()} positions, but its first query row is {rows[0]} "
                f"(a prompt of {rows[0] + 1}); its teacher_forced must give the prompt alone."
            )
        cache.crop(-1)
        return cls(loaded, forced, cache)

    def rows(self, tokens: Sequence[int]) -> tuple[dict[str, Any], list[int]]:
        """The forward inputs over the query rows of ``tokens``, and those rows within it.

        The forward appends the rows' keys and values to the cache, for the next chunk:
        they come from detached layer inputs and frozen weights, so they carry no graph.
        """
        if not tokens or tokens[0] != self._next:
            raise DexarError(
                f"the prompt cache continues at answer token {self._next}, not at "
                f"{tokens[0] if tokens else 'an empty chunk'}; chunks must come in order."
            )
        self._next = tokens[-1] + 1
        first, last = self._query_rows[tokens[0]], self._query_rows[tokens[-1]]
        inputs = {
            "input_ids": self._ids[:, first : last + 1],
            "cache": self._cache,
            "use_cache": True,
            "logits_to_keep": 1,
        }
        return inputs, list(range(last + 1 - first))

    @property
    def module(self) -> Any:
        """What runs the inputs of :meth:`rows`."""
        return self._module


def _holds_placeholders(config: Any, ids: torch.Tensor) -> bool:
    placeholders = [getattr(config, name, None) for name in _PLACEHOLDER_IDS]
    return any(bool((ids == value).any()) for value in placeholders if isinstance(value, int))


def kept_prefill(
    cache: Any, prompt_inputs: Mapping[str, Any], *, row: int | None = None, offset: int = 0
) -> PromptPrefill | None:
    """The prompt's part of the cache ``generate`` filled from ``prompt_inputs``.

    Args:
        cache: the ``DynamicCache`` (made without a config) generation ran with.
        prompt_inputs: the inputs of the prompt, holding its ``input_ids``.
        row: the prompt's row in a batch's cache (:mod:`dexar_core.hf.batched`); None:
            the cache holds this prompt alone.
        offset: the padding positions before the prompt in that row.

    Returns:
        Each layer's keys and values over the prompt's positions (views, no copy); None
        where a layer is not a plain ``DynamicLayer`` holding every prompt position.
    """
    from transformers.cache_utils import DynamicLayer

    length = int(prompt_inputs["input_ids"].shape[-1])
    layers = list(getattr(cache, "layers", ()))
    if not layers or any(
        type(layer) is not DynamicLayer
        or layer.keys is None
        or layer.keys.shape[-2] < offset + length
        for layer in layers
    ):
        return None
    rows = slice(None) if row is None else slice(row, row + 1)
    keys_values = tuple(
        (
            layer.keys[rows, ..., offset : offset + length, :],
            layer.values[rows, ..., offset : offset + length, :],
        )
        for layer in layers
    )
    return PromptPrefill(keys_values=keys_values, inputs=prompt_inputs)
