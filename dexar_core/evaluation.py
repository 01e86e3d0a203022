"""The grounded benchmark: explain a model's answers and score the maps (METHOD.md §10).

For every item of a grounded dataset (images with per-object masks, a question and its
expected answer), :func:`evaluate` asks the model the question (free-run: the model
generates its own answer, a caption for ``caption`` items), explains that answer, and
scores it:

- **Segmentation**: the sequence map against the union of all objects' masks
  (``soft_iou``, ``best_iou``, ``epg``, ``snr``), with the uniform and the random smooth
  chance lines of :func:`dexar_core.metrics.chance_scores` computed on the same mask.
- **Token grounding**: every answer token that names an object of the item (a colour
  or shape word: :data:`OBJECT_WORDS`) is scored against the mask of the object(s) it
  names: the pointing game and the IoU (``object_iou``) of its token map, beside the
  uniform pointing chance (the mask's area fraction) and the random smooth map's hit
  and IoU. A word that several objects share ("red" with two red shapes) names them
  all: its mask is the union of their masks. A colour or shape word that names no
  object of the item (the model's mistake) is counted as ``absent`` and not scored.
- **delta separation**: the AUROC of ``delta^t`` with object words as positives and
  function words (:data:`FUNCTION_WORDS`) as negatives, pooled over every token of
  every item; position words ("top", "left") are neither and are left out.
- **Answers**: exact-match accuracy of the generated answer per question kind.

Means leave out undefined values (NaN, and an infinite SNR when a map is zero on one
side of the mask) and count them in ``undefined``. Nothing is printed: an optional
callback sees each item, and with ``out`` the per-item records go to ``items.jsonl``
(one line per item, flushed as it goes) and the summary to ``summary.json``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import numpy as np

from dexar_core.datasets.shapes import (
    COLORS,
    KINDS,
    SHAPES,
    SPLITS,
    ShapesDataset,
    ShapesItem,
)
from dexar_core.errors import DatasetError, InputError
from dexar_core.metrics import (
    auroc,
    chance_scores,
    object_iou,
    pointing_game,
    random_smooth_map,
    segmentation_scores,
    uniform_map,
    uniform_pointing_chance,
)

if TYPE_CHECKING:
    from dexar_core.explanation import Explanation
    from dexar_core.records import LoadedModel
    from dexar_plugins.manager import Catalog

__all__ = [
    "CHANCE_LINES",
    "DATASETS",
    "FUNCTION_WORDS",
    "ITEMS_FILE",
    "OBJECT_WORDS",
    "SEGMENTATION_METRICS",
    "SUMMARY_FILE",
    "GroundedDataset",
    "ItemResult",
    "Summary",
    "TokenGrounding",
    "chance_seed",
    "evaluate",
    "open_dataset",
    "score_item",
    "summarise",
    "token_word",
    "word_class",
]

DATASETS: dict[str, tuple[Callable[..., ShapesDataset], tuple[str, ...]]] = {
    "shapes": (ShapesDataset, tuple(SPLITS)),
}
"""Grounded datasets by name: a factory called as ``factory(split, seed=, image_size=)``
and the split names it accepts."""

OBJECT_WORDS: frozenset[str] = frozenset((*COLORS, *SHAPES))
"""Words that name an object: its colour or its shape."""

FUNCTION_WORDS: frozenset[str] = frozenset({"a", "an", "the", "at", "and", "of", "in", "is"})
"""Closed-class words of the benchmark's answers: the negatives of the delta AUROC."""

SEGMENTATION_METRICS: tuple[str, ...] = ("soft_iou", "best_iou", "epg", "snr")
"""The sequence-map scores, in report order (``snr`` in dB)."""

CHANCE_LINES: tuple[str, ...] = ("uniform", "random_smooth")
"""The chance lines reported beside the method, in report order."""

ITEMS_FILE = "items.jsonl"
SUMMARY_FILE = "summary.json"


class GroundedDataset(Protocol):
    """What :func:`evaluate` reads: indexable items with masks, e.g. a ShapesDataset."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> ShapesItem: ...


def open_dataset(
    name: str, split: str = "test", *, seed: int = 0, image_size: int = 64
) -> ShapesDataset:
    """Open a split of a grounded dataset by name.

    Args:
        name: a key of :data:`DATASETS` (``"shapes"``).
        split: the split, e.g. ``"test"``; the dataset checks it.
        seed: the dataset's seed (the benchmark's items depend on it).
        image_size: image side in pixels; use the size the model was trained at.

    Raises:
        DatasetError: for an unknown dataset or split.
    """
    if name not in DATASETS:
        raise DatasetError(
            f"evaluate: no dataset named {name!r}; the grounded datasets are "
            f"{sorted(DATASETS)}. Pass one of them (e.g. --dataset shapes)."
        )
    factory, splits = DATASETS[name]
    if split not in splits:
        raise DatasetError(
            f"evaluate: dataset {name!r} has no split {split!r}; its splits are "
            f"{list(splits)}. Pass one of them (the benchmark's figures use 'test')."
        )
    return factory(split, seed=seed, image_size=image_size)


def chance_seed(seed: int, index: int) -> int:
    """Seed of the random smooth chance map of item ``index`` under the run's ``seed``."""
    return seed * 1_000_003 + index


def token_word(token: str) -> str:
    """The word a token spells: lower case, without word-start markers or punctuation."""
    return "".join(char for char in token.lower() if char.isalpha())


def word_class(word: str, item: ShapesItem) -> str:
    """The word's class: ``object``, ``absent`` (naming nothing here), ``function``, ``other``."""
    if word in OBJECT_WORDS:
        return "object" if _named_objects(word, item) else "absent"
    return "function" if word in FUNCTION_WORDS else "other"


def _named_objects(word: str, item: ShapesItem) -> tuple[int, ...]:
    """Indices of the objects whose colour or shape is ``word`` and that show a pixel."""
    return tuple(
        index
        for index, obj in enumerate(item.objects)
        if word in (obj.color, obj.shape) and obj.mask.any()
    )


@attrs.frozen(kw_only=True)
class TokenGrounding:
    """The scores of one answer token that names objects of the item.

    Attributes:
        position: the token's index in the answer.
        token: the token as the tokenizer gives it.
        word: the word it spells (:func:`token_word`).
        objects: indices of the objects it names; its mask is their union.
        delta: the token's weight ``delta^t``.
        pointing_game: whether its map's maximum lies inside the mask.
        iou: ``object_iou`` of its map and the mask.
        uniform_pointing_chance: the mask's area fraction.
        uniform_iou: ``object_iou`` of the uniform map.
        random_pointing_game: the pointing game of the item's random smooth map.
        random_iou: ``object_iou`` of the item's random smooth map.
    """

    position: int
    token: str
    word: str
    objects: tuple[int, ...]
    delta: float
    pointing_game: bool
    iou: float
    uniform_pointing_chance: float
    uniform_iou: float
    random_pointing_game: bool
    random_iou: float


@attrs.frozen(kw_only=True)
class ItemResult:
    """Everything measured on one item, as written to ``items.jsonl``.

    Attributes:
        index: the item's index in its split.
        kind: its question kind.
        question: the question asked.
        expected: the expected answer.
        answer: the model's answer ("" when it answered nothing).
        correct: exact match of ``answer`` and ``expected``.
        tokens: the explained answer tokens.
        token_weights: ``delta^t`` per token.
        word_classes: per token, ``object``, ``absent``, ``function`` or ``other``.
        sequence_fallback: every delta was 0 and the sequence map weighs tokens by 1.
        segmentation: the sequence map's scores against the union mask.
        chance: the same scores of each chance line (:data:`CHANCE_LINES`).
        token_grounding: one record per object-word token.
        seconds: time spent on the item.
        error: why the item could not be explained (then nothing else is scored).
    """

    index: int
    kind: str
    question: str
    expected: str
    answer: str
    correct: bool
    tokens: tuple[str, ...] = ()
    token_weights: tuple[float, ...] = ()
    word_classes: tuple[str, ...] = ()
    sequence_fallback: bool = False
    segmentation: Mapping[str, float] = attrs.field(factory=dict)
    chance: Mapping[str, Mapping[str, float]] = attrs.field(factory=dict)
    token_grounding: tuple[TokenGrounding, ...] = ()
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become None)."""
        return _json_ready(attrs.asdict(self))


@attrs.frozen(kw_only=True)
class Summary:
    """The benchmark's numbers for one model and method, with the chance lines beside.

    Attributes:
        dataset: the dataset's description (``repr``).
        split: the split evaluated.
        model_id: the model evaluated.
        method: the explanation method.
        options: the method's options as given.
        seed: the run's seed (random smooth chance maps, see :func:`chance_seed`).
        items: items evaluated.
        skipped: items that could not be explained (see ``ItemResult.error``).
        seconds: wall-clock time of the run.
        segmentation: ``{"method" | "uniform" | "random_smooth": {metric: mean}}`` over
            the explained items.
        undefined: per metric, how many items' method scores were left out of its mean.
        grounding: ``{"tokens": n, "absent": n, "pointing_game": {line: rate},
            "iou": {line: mean}}``; the pointing game's ``uniform`` line is the mean
            area fraction (the uniform pointing chance).
        delta_auroc: ``{"auroc", "auroc_within_answer", "object_words",
            "function_words", "answers"}``; ``auroc`` pools every token, the
            within-answer figure averages the AUROCs of the ``answers`` that hold both
            classes. None where undefined.
        accuracy: exact-match accuracy per question kind present and ``"all"``.
        kind_counts: items per question kind and ``"all"``.
    """

    dataset: str
    split: str
    model_id: str
    method: str
    options: Mapping[str, Any]
    seed: int
    items: int
    skipped: int
    seconds: float
    segmentation: Mapping[str, Mapping[str, float]]
    undefined: Mapping[str, int]
    grounding: Mapping[str, Any]
    delta_auroc: Mapping[str, Any]
    accuracy: Mapping[str, float]
    kind_counts: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become None)."""
        return _json_ready(attrs.asdict(self))


def evaluate(
    loaded: LoadedModel,
    dataset: GroundedDataset,
    *,
    method: str = "dexar",
    limit: int | None = None,
    out: str | Path | None = None,
    seed: int = 0,
    max_new_tokens: int = 40,
    on_item: Callable[[ShapesItem, Explanation | None, ItemResult], None] | None = None,
    catalog: Catalog | None = None,
    **options: Any,
) -> Summary:
    """Explain the model's answer on each item and score the maps against the masks.

    Args:
        loaded: what :func:`dexar_core.api.load` returned.
        dataset: grounded items (e.g. :func:`open_dataset`'s split), taken in order.
        method: the explanation method (``dexar`` or a registered baseline).
        limit: evaluate only the first ``limit`` items; all of them when None.
        out: a folder for ``items.jsonl`` and ``summary.json``; nothing is written when
            None.
        seed: seeds the random smooth chance maps (:func:`chance_seed`).
        max_new_tokens: the longest generated answer (a three-object caption takes 25).
        on_item: called after each item with the item, its explanation (None when it
            could not be explained) and its result, e.g. to show progress.
        catalog: the plugin catalog; the process-wide one by default.
        **options: the method's options, as for :func:`dexar_core.api.explain`.

    Returns:
        The :class:`Summary`; also written to ``out/summary.json`` when ``out`` is given.

    Raises:
        InputError: for a ``limit`` that is not a positive integer or an empty dataset.
        MethodError: for an unknown method or bad method options (checked before the
            first item).
    """
    from dexar_core.api import explain
    from dexar_plugins import default_catalog

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(
            f"evaluate: limit must be a positive number of items, got {limit!r}; leave it "
            "out (no --limit) to evaluate the whole split."
        )
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise InputError("evaluate: the dataset has no item; give a non-empty split.")
    plugins = default_catalog() if catalog is None else catalog
    plugins.method(method).factory(**options)  # bad options fail here, not on every item
    items_file = _open_items_file(out)
    results: list[ItemResult] = []
    start = time.perf_counter()
    try:
        for position in range(count):
            item = dataset[position]
            item_start = time.perf_counter()
            explanation: Explanation | None
            try:
                explanation = explain(
                    loaded,
                    item.image,
                    item.question,
                    method=method,
                    max_new_tokens=max_new_tokens,
                    catalog=plugins,
                    **options,
                )
            except InputError as error:
                # An item-level failure (typically an empty answer) is recorded, not fatal.
                explanation = None
                result = ItemResult(
                    index=item.index,
                    kind=item.kind,
                    question=item.question,
                    expected=item.answer,
                    answer="",
                    correct=False,
                    seconds=time.perf_counter() - item_start,
                    error=str(error),
                )
            else:
                result = score_item(item, explanation, seed=seed)
                result = attrs.evolve(result, seconds=time.perf_counter() - item_start)
            results.append(result)
            if items_file is not None:
                items_file.write(json.dumps(result.to_dict()) + "\n")
                items_file.flush()
            if on_item is not None:
                on_item(item, explanation, result)
    finally:
        if items_file is not None:
            items_file.close()
    summary = summarise(
        results,
        dataset=repr(dataset),
        split=str(getattr(dataset, "split", "")),
        model_id=loaded.model_id,
        method=method,
        options=options,
        seed=seed,
        seconds=time.perf_counter() - start,
    )
    if out is not None:
        (Path(out) / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def score_item(item: ShapesItem, explanation: Explanation, *, seed: int = 0) -> ItemResult:
    """Score one explanation of the model's answer on ``item`` (no timing).

    Args:
        item: the benchmark item, with its masks.
        explanation: the explanation of the model's answer to ``item.question``.
        seed: the run's seed (the random smooth map uses :func:`chance_seed`).
    """
    token_maps, sequence_map = explanation.upsample(0)
    union = item.union_mask
    random_map = random_smooth_map(union.shape, chance_seed(seed, item.index))
    weights = [float(weight) for weight in explanation.token_weights]
    words = [token_word(token) for token in explanation.tokens]
    classes = [word_class(word, item) for word in words]
    grounding = []
    for position, (token, word, word_kind) in enumerate(
        zip(explanation.tokens, words, classes, strict=True)
    ):
        if word_kind != "object":
            continue
        objects = _named_objects(word, item)
        mask = np.any([item.objects[index].mask for index in objects], axis=0)
        grounding.append(
            TokenGrounding(
                position=position,
                token=token,
                word=word,
                objects=objects,
                delta=weights[position],
                pointing_game=pointing_game(token_maps[position], mask),
                iou=object_iou(token_maps[position], mask),
                uniform_pointing_chance=uniform_pointing_chance(mask),
                uniform_iou=object_iou(uniform_map(mask.shape), mask),
                random_pointing_game=pointing_game(random_map, mask),
                random_iou=object_iou(random_map, mask),
            )
        )
    return ItemResult(
        index=item.index,
        kind=item.kind,
        question=item.question,
        expected=item.answer,
        answer=explanation.answer,
        correct=explanation.answer.strip() == item.answer,
        tokens=tuple(explanation.tokens),
        token_weights=tuple(weights),
        word_classes=tuple(classes),
        sequence_fallback=explanation.sequence_fallback,
        segmentation=segmentation_scores(sequence_map, union),
        chance=chance_scores(union, chance_seed(seed, item.index)),
        token_grounding=tuple(grounding),
    )


def summarise(
    results: Sequence[ItemResult],
    *,
    dataset: str,
    split: str,
    model_id: str,
    method: str,
    options: Mapping[str, Any],
    seed: int,
    seconds: float,
) -> Summary:
    """Aggregate per-item results into the :class:`Summary` (see its attributes)."""
    scored = [result for result in results if result.error is None]
    lines: dict[str, list[Mapping[str, float]]] = {
        "method": [result.segmentation for result in scored],
        **{line: [result.chance[line] for result in scored] for line in CHANCE_LINES},
    }
    segmentation = {
        line: {metric: _finite_mean([s[metric] for s in scores]) for metric in SEGMENTATION_METRICS}
        for line, scores in lines.items()
    }
    undefined = {
        metric: sum(not math.isfinite(s[metric]) for s in lines["method"])
        for metric in SEGMENTATION_METRICS
    }
    tokens = [grounding for result in scored for grounding in result.token_grounding]
    grounding = {
        "tokens": len(tokens),
        "absent": sum(result.word_classes.count("absent") for result in scored),
        "pointing_game": {
            "method": _finite_mean([float(t.pointing_game) for t in tokens]),
            "uniform": _finite_mean([t.uniform_pointing_chance for t in tokens]),
            "random_smooth": _finite_mean([float(t.random_pointing_game) for t in tokens]),
        },
        "iou": {
            "method": _finite_mean([t.iou for t in tokens]),
            "uniform": _finite_mean([t.uniform_iou for t in tokens]),
            "random_smooth": _finite_mean([t.random_iou for t in tokens]),
        },
    }
    kinds = [kind for kind in KINDS if any(r.kind == kind for r in results)]
    kinds += sorted({r.kind for r in results} - set(kinds))
    accuracy = {
        kind: _finite_mean([float(r.correct) for r in results if r.kind == kind]) for kind in kinds
    }
    accuracy["all"] = _finite_mean([float(r.correct) for r in results])
    kind_counts = {kind: sum(r.kind == kind for r in results) for kind in kinds}
    kind_counts["all"] = len(results)
    return Summary(
        dataset=dataset,
        split=split,
        model_id=model_id,
        method=method,
        options=dict(options),
        seed=seed,
        items=len(results),
        skipped=len(results) - len(scored),
        seconds=seconds,
        segmentation=segmentation,
        undefined=undefined,
        grounding=grounding,
        delta_auroc=_delta_separation(scored),
        accuracy=accuracy,
        kind_counts=kind_counts,
    )


def _delta_separation(results: Sequence[ItemResult]) -> dict[str, Any]:
    """AUROC of delta, object words against function words, pooled and within answers."""
    pooled_scores: list[float] = []
    pooled_labels: list[bool] = []
    within: list[float] = []
    for result in results:
        scores = [
            weight
            for weight, kind in zip(result.token_weights, result.word_classes, strict=True)
            if kind in ("object", "function")
        ]
        labels = [
            kind == "object" for kind in result.word_classes if kind in ("object", "function")
        ]
        pooled_scores += scores
        pooled_labels += labels
        if any(labels) and not all(labels):
            within.append(auroc(scores, labels))
    positives = sum(pooled_labels)
    negatives = len(pooled_labels) - positives
    return {
        "auroc": auroc(pooled_scores, pooled_labels) if positives and negatives else None,
        "auroc_within_answer": float(np.mean(within)) if within else None,
        "object_words": positives,
        "function_words": negatives,
        "answers": len(within),
    }


def _finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN when there is none."""
    finite = [value for value in values if math.isfinite(value)]
    return float(np.mean(finite)) if finite else float("nan")


def _json_ready(value: Any) -> Any:
    """A copy with tuples as lists, numpy scalars as Python ones, non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _open_items_file(out: str | Path | None) -> Any:
    """``out/items.jsonl`` opened for writing (the folder made), or None without ``out``."""
    if out is None:
        return None
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"evaluate: out={str(folder)!r} is a file; give a folder for the results.")
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / ITEMS_FILE).open("w", encoding="utf-8")
