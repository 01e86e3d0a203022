"""The records of the grounded benchmark: what one item and one run measured.

:class:`ItemResult` is one line of ``items.jsonl``; :class:`Summary` is ``summary.json``.
Both go to JSON with non-finite numbers as ``null`` and come back with
:meth:`ItemResult.from_dict` (``null`` as NaN), so a resumed run summarises exactly the
numbers an uninterrupted run would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from dexar_core.datasets.benchmark import as_benchmark_item
from dexar_core.explanation import plain_copy

__all__ = [
    "CHANCE_LINES",
    "FUNCTION_WORDS",
    "METRICS",
    "NOT_APPLICABLE_TO_PROMPTS",
    "PERTURBATION_ORDERS",
    "SEGMENTATION_METRICS",
    "ItemResult",
    "Summary",
    "TokenGrounding",
    "json_ready",
    "token_word",
    "word_class",
]

METRICS: tuple[str, ...] = ("segmentation", "grounding", "perturbation")
"""The metric families of ``--metrics``, in report order."""

SEGMENTATION_METRICS: tuple[str, ...] = ("soft_iou", "best_iou", "epg", "snr")
"""The sequence-map scores, in report order (``snr`` in dB)."""

CHANCE_LINES: tuple[str, ...] = ("uniform", "random_smooth")
"""The chance lines reported beside the method, in report order."""

PERTURBATION_ORDERS: tuple[str, ...] = ("positive", "negative")
"""The perturbation AUCs: positive (higher is better), negative (lower is better)."""

FUNCTION_WORDS: frozenset[str] = frozenset({"a", "an", "the", "at", "and", "of", "in", "is"})
"""Closed-class words of the benchmark's answers: the negatives of the delta AUROC."""


def token_word(token: str) -> str:
    """The word a token spells: lower case, without word-start markers or punctuation."""
    return "".join(char for char in token.lower() if char.isalpha())


def word_class(word: str, item: Any) -> str:
    """The word's class: ``object``, ``absent`` (naming nothing here), ``function``, ``other``.

    Args:
        word: a word as :func:`token_word` spells it.
        item: a :class:`BenchmarkItem` or any item :func:`as_benchmark_item` converts.
    """
    named = as_benchmark_item(item).object_words.get(word)
    if named is not None:
        return "object" if named else "absent"
    return "function" if word in FUNCTION_WORDS else "other"


NOT_APPLICABLE_TO_PROMPTS: dict[str, str] = {
    "grounding": (
        "not applicable to a contrastive model: its map explains the similarity of the "
        "whole prompt, so no word has a map of its own to point with"
    ),
    "delta_auroc": (
        "not applicable to a contrastive model: there are no answer tokens and no delta^t per token"
    ),
}
"""Why a model whose units are prompts has no grounding and no delta AUROC."""


@attrs.frozen(kw_only=True)
class TokenGrounding:
    """The scores of one answer token that names objects of the item.

    Attributes:
        position: the token's index in the answer.
        token: the token as the tokenizer gives it.
        word: the word it spells (:func:`token_word`).
        objects: ids of the objects it names; its mask is their union.
        delta: the token's weight ``delta^t``.
        pointing_game: whether its map's maximum lies inside the mask.
        iou: ``object_iou`` of its map and the mask.
        uniform_pointing_chance: the mask's area fraction.
        uniform_iou: ``object_iou`` of the uniform map.
        random_pointing_game: the pointing game of the item's random smooth map.
        random_iou: ``object_iou`` of the item's random smooth map.
        wrong_object_peak: whether its map's maximum lies inside another object of the
            item (``wrong_object_peak``); None when the item has no other visible object.
        other_objects_area: the other objects' area fraction, the wrong-object peak's
            uniform chance; NaN without another object.
        random_wrong_object_peak: the wrong-object peak of the item's random smooth map.
        contrast: ``object_contrast`` of its map: mean on its object minus mean on the
            background; below 0 the map is inverted. NaN where undefined.
        random_contrast: ``object_contrast`` of the item's random smooth map.
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
    wrong_object_peak: bool | None = None
    other_objects_area: float = math.nan
    random_wrong_object_peak: bool | None = None
    contrast: float = math.nan
    random_contrast: float = math.nan


@attrs.frozen(kw_only=True)
class ItemResult:
    """Everything measured on one item, as written to ``items.jsonl``.

    Attributes:
        index: the item's position in its dataset.
        item_id: the dataset's own id of the item.
        kind: its question kind.
        question: the question asked.
        expected: the first reference answer ("" when the dataset has none).
        answer: the model's answer ("" when it answered nothing).
        correct: whether the answer matches the references; None without references.
        tokens: the explained answer tokens.
        token_weights: ``delta^t`` per token.
        word_classes: per token, ``object``, ``absent``, ``function`` or ``other``.
        sequence_fallback: every delta was 0 and the sequence map weighs tokens by 1.
        segmentation: the sequence map's scores against the union mask.
        chance: the same scores of each chance line (:data:`CHANCE_LINES`).
        token_grounding: one record per object-word token.
        perturbation: ``{"method" | "random_smooth": {"positive", "negative"}}``: the
            normalised-perplexity AUCs of the sequence map and of a random smooth map.
        perturbation_log_ratio: the same layout: the areas under ``ln(PPL_r / PPL_0)``
            (docs/method.md §11); empty for a similarity measure and in records written
            before it was measured.
        perturbation_curves: ``{"positive", "negative"}``: the method's ``nPPL_r`` at
            r = 0, 0.1, ..., 0.9.
        seconds: time spent on the item.
        error: why the item could not be explained (then nothing else is scored).
    """

    index: int
    item_id: str = ""
    kind: str
    question: str
    expected: str
    answer: str
    correct: bool | None
    tokens: tuple[str, ...] = ()
    token_weights: tuple[float, ...] = ()
    word_classes: tuple[str, ...] = ()
    sequence_fallback: bool = False
    segmentation: Mapping[str, float] = attrs.field(factory=dict)
    chance: Mapping[str, Mapping[str, float]] = attrs.field(factory=dict)
    token_grounding: tuple[TokenGrounding, ...] = ()
    perturbation: Mapping[str, Mapping[str, float]] = attrs.field(factory=dict)
    perturbation_log_ratio: Mapping[str, Mapping[str, float]] = attrs.field(factory=dict)
    perturbation_curves: Mapping[str, tuple[float, ...]] = attrs.field(factory=dict)
    seconds: float = 0.0
    error: str | None = None

    @classmethod
    def failed(
        cls,
        item: Any,
        error: Exception,
        seconds: float,
        *,
        question: str,
        expected: str,
        correct: bool | None,
    ) -> ItemResult:
        """An item that could not be explained: who it is and why, nothing scored."""
        return cls(
            index=item.index,
            item_id=item.item_id,
            kind=item.kind,
            question=question,
            expected=expected,
            answer="",
            correct=correct,
            seconds=seconds,
            error=str(error),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become None)."""
        return json_ready(attrs.asdict(self))

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ItemResult:
        """The result :meth:`to_dict` wrote (``None`` numbers read back as NaN)."""
        fields = dict(record)
        fields["tokens"] = tuple(fields.get("tokens", ()))
        fields["word_classes"] = tuple(fields.get("word_classes", ()))
        fields["token_weights"] = tuple(_number(w) for w in fields.get("token_weights", ()))
        for name in ("segmentation", "chance", "perturbation", "perturbation_log_ratio"):
            fields[name] = _numbers(fields.get(name) or {})
        fields["perturbation_curves"] = {
            order: tuple(_number(v) for v in curve)
            for order, curve in (fields.get("perturbation_curves") or {}).items()
        }
        fields["token_grounding"] = tuple(
            _token_grounding(grounding) for grounding in fields.get("token_grounding", ())
        )
        return cls(**fields)


@attrs.frozen(kw_only=True)
class Summary:
    """The benchmark's numbers for one model and method, with the chance lines beside.

    Attributes:
        dataset: the dataset's description (``repr``).
        split: the split evaluated.
        model_id: the model evaluated.
        method: the explanation method.
        options: the method's options as given.
        metrics: the metric families measured (:data:`METRICS`).
        seed: the run's seed (random smooth chance maps and bootstrap resamples).
        items: items evaluated.
        skipped: items that could not be explained (see ``ItemResult.error``).
        seconds: time spent on the items, summed over items (and processes).
        segmentation: ``{"method" | "uniform" | "random_smooth": {metric: mean}}`` over
            the explained items.
        undefined: per metric, how many items' method scores were left out of its mean.
        grounding: ``{"tokens": n, "absent": n, "wrong_object_tokens": n,
            "pointing_game": {line: rate}, "iou": {line: mean}, "wrong_object_peak":
            {line: rate}, "inverted": {"method" | "random_smooth": rate}}``; the
            ``uniform`` line of the pointing game and of the wrong-object peak is the
            mean area fraction (of the named, of the other objects); the wrong-object
            peak counts the ``wrong_object_tokens`` of items with another object.
        delta_auroc: ``{"auroc", "auroc_within_answer", "all_zero_share",
            "object_words", "function_words", "answers"}``; ``auroc`` pools every
            token, the within-answer figure averages the AUROCs of the ``answers`` that
            hold both classes, ``all_zero_share`` is the share of explained answers
            whose every delta is 0. None where undefined.
        perturbation: ``{"method" | "random_smooth": {"positive" | "negative": mean AUC}}``.
        perturbation_log_ratio: the same layout: the mean areas under
            ``ln(PPL_r / PPL_0)`` (docs/method.md §11), over the items that have one (NaN
            for a similarity measure).
        perturbation_median: ``{"auc" | "log_ratio": {line: {order: median}}}``.
        perturbation_win_rate: ``{"auc" | "log_ratio": {"random_smooth": {order:
            share}}}``: the share of items on which the method's number is better than
            the baseline's on the same item (``perturbation_measure`` says which side is
            better), ties counted half.
        accuracy: answer accuracy per question kind present and ``"all"`` (over the
            items that have reference answers).
        kind_counts: items per question kind and ``"all"``.
        confidence: the 95% percentile-bootstrap interval ``[low, high]`` of every mean,
            median, rate and AUROC above, nested as the numbers are
            (``confidence["segmentation"]["method"]["epg"]``); items are resampled,
            ``resamples`` times.
        resamples: bootstrap resamples behind ``confidence``.
        perturbation_measure: what the perturbation AUCs normalise: ``perplexity``
            (generative models, nPPL: positive higher is better) or ``similarity``
            (contrastive models, ``sim_r / sim_0``: positive lower is better).
        not_applicable: metric name -> why the model cannot be scored by it (a
            contrastive model has no grounding and no delta AUROC); empty otherwise.
    """

    dataset: str
    split: str
    model_id: str
    method: str
    options: Mapping[str, Any]
    metrics: tuple[str, ...]
    seed: int
    items: int
    skipped: int
    seconds: float
    segmentation: Mapping[str, Mapping[str, float]]
    undefined: Mapping[str, int]
    grounding: Mapping[str, Any]
    delta_auroc: Mapping[str, Any]
    perturbation: Mapping[str, Mapping[str, float]]
    perturbation_log_ratio: Mapping[str, Mapping[str, float]]
    perturbation_median: Mapping[str, Mapping[str, Mapping[str, float]]]
    perturbation_win_rate: Mapping[str, Mapping[str, Mapping[str, float]]]
    accuracy: Mapping[str, float]
    kind_counts: Mapping[str, int]
    confidence: Mapping[str, Any]
    resamples: int
    perturbation_measure: str = "perplexity"
    not_applicable: Mapping[str, str] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite floats become None)."""
        return json_ready(attrs.asdict(self))


def json_ready(value: Any) -> Any:
    """A copy with tuples as lists, numpy scalars as Python ones, non-finite floats as None."""
    return plain_copy(value, non_finite_as_none=True)


def _token_grounding(record: Mapping[str, Any]) -> TokenGrounding:
    return TokenGrounding(
        position=int(record["position"]),
        token=str(record["token"]),
        word=str(record["word"]),
        objects=tuple(int(obj) for obj in record["objects"]),
        delta=_number(record["delta"]),
        pointing_game=bool(record["pointing_game"]),
        iou=_number(record["iou"]),
        uniform_pointing_chance=_number(record["uniform_pointing_chance"]),
        uniform_iou=_number(record["uniform_iou"]),
        random_pointing_game=bool(record["random_pointing_game"]),
        random_iou=_number(record["random_iou"]),
        # records written before these fields existed read as "not measured"
        wrong_object_peak=_flag(record.get("wrong_object_peak")),
        other_objects_area=_number(record.get("other_objects_area")),
        random_wrong_object_peak=_flag(record.get("random_wrong_object_peak")),
        contrast=_number(record.get("contrast")),
        random_contrast=_number(record.get("random_contrast")),
    )


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _numbers(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _numbers(item) for key, item in value.items()}
    return _number(value)
