"""One batch of a dataset run: explain its items and score each explanation (docs/method.md §11).

:func:`evaluate_items` explains a batch of items together
(:func:`dexar_core.explaining.batch_explanations`: the adapter's ``batched_units`` runs
them through the model together where it batches) and scores each explanation
(:func:`score_item`, and the perturbation metric, which needs the model). An item that
cannot be explained is recorded with its error and the run goes on. Each item's
record is the one it gets in a batch of one, but for its ``seconds``: in a batch, its
share of the batch's explanation time and its own scoring.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from dexar_core.datasets.benchmark import BenchmarkItem, as_benchmark_item
from dexar_core.errors import InputError
from dexar_core.evaluation.perturbation import chance_seed, perturbation_scores
from dexar_core.evaluation.records import ItemResult, TokenGrounding, token_word, word_class
from dexar_core.interfaces import PROMPTS
from dexar_core.metrics import (
    chance_scores,
    object_contrast,
    object_iou,
    pointing_game,
    random_smooth_map,
    segmentation_scores,
    uniform_map,
    uniform_pointing_chance,
    wrong_object_peak,
)
from dexar_core.seen import scored_pixels

if TYPE_CHECKING:
    from dexar_core.explanation import Explanation
    from dexar_core.records import LoadedModel
    from dexar_plugins.manager import Catalog


def evaluate_items(
    loaded: LoadedModel,
    items: Sequence[BenchmarkItem],
    *,
    units: str,
    method: str,
    metrics: Sequence[str],
    seed: int,
    max_new_tokens: int,
    replacement: str,
    catalog: Catalog,
    options: dict[str, Any],
    answers: str = "generated",
) -> list[tuple[Explanation | None, ItemResult]]:
    """Explain the model on a batch of items and score each; a failed item is recorded.

    ``units`` is the adapter's: a contrastive model's prompt is the item's caption, it
    has no reference answer and no accuracy. ``answers`` is ``"generated"`` (the model's
    own greedy answer is explained and judged) or ``"reference"`` (the item's first
    reference answer is explained, teacher-forced; nothing is judged, ``correct`` is
    None).
    """
    from dexar_core.explaining import BatchItem, batch_explanations

    start = time.perf_counter()
    prompts = units == PROMPTS
    questions: list[str] = []
    refused: list[InputError | None] = []  # an item whose prompt fails is not explained
    requests: list[BatchItem] = []
    for item in items:
        try:
            questions.append(explained_prompt(item, units))
            forced = item.answer if answers == "reference" else None
            requests.append(BatchItem(image=item.image, prompt=questions[-1], answer=forced))
            refused.append(None)
        except InputError as error:
            questions.append(item.description if prompts else item.question)
            refused.append(error)
    explained = batch_explanations(
        loaded,
        requests,
        method=method,
        max_new_tokens=max_new_tokens,
        chunk_size=None,
        batch_size=max(len(requests), 1),
        catalog=catalog,
        options=options,
    )
    ordered = [next(explained) if error is None else error for error in refused]
    judged = not prompts and answers != "reference"  # a given answer is not the model's
    share = (time.perf_counter() - start) / len(items)
    results: list[tuple[Explanation | None, ItemResult]] = []
    for item, question, outcome in zip(items, questions, ordered, strict=True):
        if isinstance(outcome, InputError):
            # An item-level failure (typically an empty answer) is recorded, not fatal.
            results.append(
                (
                    None,
                    ItemResult.failed(
                        item,
                        outcome,
                        share,
                        question=question,
                        expected="" if prompts else item.answer,
                        correct=False if judged and item.references else None,
                    ),
                )
            )
            continue
        scoring = time.perf_counter()
        result = score_item(item, outcome, seed=seed, metrics=metrics)
        if not judged:
            result = attrs.evolve(result, correct=None)
        if "perturbation" in metrics:
            result = attrs.evolve(
                result, **perturbation_scores(loaded, item, outcome, seed, replacement)
            )
        seconds = share + time.perf_counter() - scoring
        results.append((outcome, attrs.evolve(result, seconds=seconds)))
    return results


def explained_prompt(item: BenchmarkItem, units: str) -> str:
    """The text a model is explained with on ``item``, by what its units are.

    Answer tokens: the item's question. Prompts (a contrastive model): the item's
    description (shapes: the caption of all its objects, e.g. "a red circle at the left
    and a blue square at the right", whatever the question kind), else its first
    reference answer (ImageNet: the class name).

    Raises:
        InputError: prompts are explained and the item has neither text (VOC, VQA).
    """
    if units != PROMPTS:
        return item.question
    text = (item.description or item.answer).strip()
    if not text:
        raise InputError(
            f"item {item.item_id!r} has no caption or reference text to compare the image "
            "with; evaluate contrastive models on shapes or imagenet:PATH."
        )
    return text


def score_item(
    item: Any,
    explanation: Explanation,
    *,
    seed: int = 0,
    metrics: Sequence[str] = ("segmentation", "grounding"),
) -> ItemResult:
    """Score one explanation of the model's answer on ``item`` (no model call, no timing).

    Args:
        item: the item (a :class:`BenchmarkItem` or a reader's item, e.g. a ShapesItem).
        explanation: the explanation of the model's answer to its question.
        seed: the run's seed (the random smooth map uses :func:`chance_seed`).
        metrics: which of ``segmentation`` and ``grounding`` to score (perturbation
            needs the model: :func:`perturbation_scores`).
    """
    item = as_benchmark_item(item)
    weights = [float(weight) for weight in explanation.token_weights]
    answered = explanation.units != PROMPTS  # prompts have no reference answer
    result = ItemResult(
        index=item.index,
        item_id=item.item_id,
        kind=item.kind,
        question=item.question if answered else explanation.prompt,
        expected=item.answer if answered else "",
        answer=explanation.answer,
        correct=item.is_correct(explanation.answer) if answered else None,
        tokens=tuple(explanation.tokens),
        token_weights=tuple(weights),
        sequence_fallback=explanation.sequence_fallback,
    )
    if item.mask is None or not {"segmentation", "grounding"} & set(metrics):
        return result
    token_maps, sequence_map = explanation.upsample(0)
    valid = scored_pixels(item.valid, explanation, item.mask.shape)
    if "segmentation" in metrics:
        result = attrs.evolve(
            result,
            segmentation=segmentation_scores(sequence_map, item.mask, valid),
            chance=chance_scores(item.mask, chance_seed(seed, item.index), valid),
        )
    if "grounding" not in metrics:
        return result
    random_map = random_smooth_map(item.mask.shape, chance_seed(seed, item.index))
    words = [token_word(token) for token in explanation.tokens]
    classes = [word_class(word, item) for word in words]
    grounding = []
    for position, (token, word, word_kind) in enumerate(
        zip(explanation.tokens, words, classes, strict=True)
    ):
        if word_kind != "object":
            continue
        objects = item.object_words[word]
        mask = item.union_of(objects)
        if not (mask & valid).any():
            # the object lies wholly where the processor cropped: the model never saw
            # it, so there is nothing its map could point at
            continue
        grounding.append(
            TokenGrounding(
                position=position,
                token=token,
                word=word,
                objects=objects,
                delta=weights[position],
                pointing_game=pointing_game(token_maps[position], mask, valid),
                iou=object_iou(token_maps[position], mask, valid),
                uniform_pointing_chance=uniform_pointing_chance(mask, valid),
                uniform_iou=object_iou(uniform_map(mask.shape), mask, valid),
                random_pointing_game=pointing_game(random_map, mask, valid),
                random_iou=object_iou(random_map, mask, valid),
                contrast=object_contrast(token_maps[position], mask, ~item.mask, valid),
                random_contrast=object_contrast(random_map, mask, ~item.mask, valid),
                **_wrong_object_scores(item, objects, token_maps[position], random_map, valid),
            )
        )
    return attrs.evolve(result, word_classes=tuple(classes), token_grounding=tuple(grounding))


def _wrong_object_scores(
    item: BenchmarkItem,
    named: tuple[int, ...],
    token_map: Any,
    random_map: Any,
    valid: Any,
) -> dict[str, Any]:
    """The wrong-object peak of a token's map and its chance lines; {} with no other object.

    The other objects are those the token's word does not name, where they show a valid
    pixel (an object the processor cropped away cannot draw the peak).
    """
    others = [obj for obj in item.object_masks if obj not in named]
    other_mask = item.union_of(tuple(others)) & valid if others else None
    if other_mask is None or not other_mask.any():
        return {}
    return {
        "wrong_object_peak": wrong_object_peak(token_map, other_mask, valid),
        "other_objects_area": uniform_pointing_chance(other_mask, valid),
        "random_wrong_object_peak": wrong_object_peak(random_map, other_mask, valid),
    }
