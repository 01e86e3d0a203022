"""The grounded benchmark on contrastive models (open_clip): explain a similarity, not an answer.

A contrastive model does not answer the item's question. Instead, for each item the
explained text is :func:`similarity_prompt` (the shapes caption, which names every
object of the image, whatever the item's question kind), its map is the explanation of
the image-text similarity (``explain`` dispatches to the adapter's
``explain_similarity``), and:

- **segmentation** scores that map against the union of all objects' masks (the caption
  names them all), with the same chance lines as for generative models;
- **grounding** is not defined: the map explains one whole text, not the words of an
  answer, so no word has its own map and there is no ``delta^t`` over answer tokens.
  It is left out of the measured families and the summary says why
  (:data:`NOT_APPLICABLE`);
- **perturbation** measures the similarity drop
  (:func:`dexar_core.evaluation.perturbation.similarity_perturbation_scores`).

There is no answer, so there is no accuracy: ``correct`` is None.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.datasets.benchmark import BenchmarkItem
from dexar_core.errors import InputError
from dexar_core.evaluation.perturbation import similarity_perturbation_scores
from dexar_core.evaluation.records import ItemResult

if TYPE_CHECKING:
    from dexar_core.explanation import Explanation
    from dexar_core.records import LoadedModel

__all__ = ["NOT_APPLICABLE", "PERTURBATION_MEASURE", "is_contrastive", "similarity_prompt"]

NOT_APPLICABLE: dict[str, str] = {
    "grounding": (
        "not applicable to a contrastive model: its map explains the similarity of the "
        "whole prompt, so no word has a map of its own to point with"
    ),
    "delta_auroc": (
        "not applicable to a contrastive model: there are no answer tokens and no delta^t per token"
    ),
}
"""Why a contrastive model's summary has no grounding and no delta AUROC."""

PERTURBATION_MEASURE = "similarity"
"""``Summary.perturbation_measure`` of a contrastive run (generative: ``perplexity``)."""


def is_contrastive(loaded: LoadedModel) -> bool:
    """Whether the model scores image-text similarity (its adapter has ``explain_similarity``)."""
    return getattr(loaded.adapter, "explain_similarity", None) is not None


def similarity_prompt(item: BenchmarkItem) -> str:
    """The text a contrastive model is explained with on ``item``.

    The item's description (shapes: the caption of all its objects, e.g. "a red circle
    at the left and a blue square at the right"), else its first reference answer
    (ImageNet: the class name).

    Raises:
        InputError: the item has neither (VOC, VQA): there is no text to compare with.
    """
    text = (item.description or item.answer).strip()
    if not text:
        raise InputError(
            f"item {item.item_id!r} has no caption or reference text to compare the image "
            "with; evaluate contrastive models on shapes or imagenet:PATH."
        )
    return text


def evaluate_contrastive_item(
    loaded: LoadedModel,
    item: BenchmarkItem,
    *,
    method: str,
    metrics: Sequence[str],
    seed: int,
    replacement: str,
    options: dict[str, Any],
) -> tuple[Explanation | None, ItemResult]:
    """Explain the similarity of the item's image with its prompt and score the map.

    An item without a prompt is recorded with its error, as an empty answer is for a
    generative model.
    """
    from dexar_core.api import explain
    from dexar_core.evaluation.run import score_item

    start = time.perf_counter()
    try:
        prompt = similarity_prompt(item)
        explanation = explain(loaded, item.image, prompt, method=method, **options)
    except InputError as error:
        return None, ItemResult.failed(
            item,
            error,
            time.perf_counter() - start,
            question=item.description,
            expected="",
            correct=None,
        )
    scored = [metric for metric in metrics if metric == "segmentation"]
    result = attrs.evolve(
        score_item(item, explanation, seed=seed, metrics=scored),
        question=prompt,
        expected="",
        correct=None,
    )
    if "perturbation" in metrics:
        result = attrs.evolve(
            result, **similarity_perturbation_scores(loaded, item, explanation, seed, replacement)
        )
    return explanation, attrs.evolve(result, seconds=time.perf_counter() - start)
