"""From per-item results to the :class:`Summary`, each number with its bootstrap interval.

Every number of the summary is a function of a set of items: a mean over items, a
rate over the object tokens of the items, or an AUROC over their tokens. It is computed
once on all items and again on each bootstrap resample of the items
(:mod:`dexar_core.metrics.bootstrap`), from per-item columns, so a thousand resamples
cost little more than one summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from dexar_core.datasets.shapes import KINDS
from dexar_core.errors import InputError
from dexar_core.evaluation.records import (
    CHANCE_LINES,
    PERTURBATION_ORDERS,
    SEGMENTATION_METRICS,
    ItemResult,
    Summary,
    TokenGrounding,
)
from dexar_core.metrics import auroc
from dexar_core.metrics.bootstrap import RESAMPLES, percentile_interval, resample_indices

__all__ = ["paired_differences", "summarise"]

LINES = ("method", *CHANCE_LINES)
PERTURBATION_LINES = ("method", "random_smooth")
PERTURBATION_BETTER = {
    "perplexity": {"positive": 1.0, "negative": -1.0},
    "similarity": {"positive": -1.0, "negative": 1.0},
}
"""Per measure and order, +1 where a higher AUC (log-ratio area) is better, -1 where lower."""
INVERTED_LINES = ("method", "random_smooth")  # a constant (uniform) map is never inverted

Numbers = dict[str, Any]


def summarise(
    results: Sequence[ItemResult],
    *,
    dataset: str,
    split: str,
    model_id: str,
    method: str,
    options: Mapping[str, Any],
    seed: int,
    metrics: Sequence[str] = ("segmentation", "grounding"),
    resamples: int = RESAMPLES,
    perturbation_measure: str = "perplexity",
) -> Summary:
    """Aggregate per-item results into the :class:`Summary` (see its attributes).

    Args:
        results: one result per item, in any order.
        dataset: the dataset's description.
        split: the split.
        model_id: the model.
        method: the explanation method.
        options: its options.
        seed: the run's seed; the bootstrap draws from it.
        metrics: the metric families measured.
        resamples: bootstrap resamples (0: no intervals, every one NaN).
        perturbation_measure: what the perturbation curves score (``perplexity`` or
            ``similarity``); it decides which side of a win rate is the better one.
    """
    if not results:
        raise InputError("summarise: no item result; evaluate at least one item.")
    if perturbation_measure not in PERTURBATION_BETTER:
        raise InputError(
            f"summarise: perturbation_measure must be one of {tuple(PERTURBATION_BETTER)}, "
            f"got {perturbation_measure!r}."
        )
    columns = _Columns(results, PERTURBATION_BETTER[perturbation_measure])
    everything = np.arange(len(results))
    numbers = columns.numbers(everything)
    if resamples > 0:
        draws = resample_indices(len(results), resamples, seed)
        samples = [_leaves(columns.numbers(indices)) for indices in draws]
        intervals = {
            key: percentile_interval([sample[key] for sample in samples]) for key in samples[0]
        }
    else:
        intervals = {key: (math.nan, math.nan) for key in _leaves(numbers)}
    scored = [result for result in results if result.error is None]
    kinds = columns.kinds
    return Summary(
        dataset=dataset,
        split=split,
        model_id=model_id,
        method=method,
        options=dict(options),
        metrics=tuple(metrics),
        seed=seed,
        items=len(results),
        skipped=len(results) - len(scored),
        seconds=float(sum(result.seconds for result in results)),
        segmentation=numbers["segmentation"],
        undefined={
            metric: sum(
                bool(r.segmentation) and not math.isfinite(r.segmentation[metric]) for r in scored
            )
            for metric in SEGMENTATION_METRICS
        },
        grounding={
            "tokens": sum(len(r.token_grounding) for r in scored),
            "absent": sum(r.word_classes.count("absent") for r in scored),
            "wrong_object_tokens": int(columns.wrong_tokens.sum()),
            **numbers["grounding"],
        },
        delta_auroc={**numbers["delta_auroc"], **columns.delta_counts()},
        perturbation=numbers["perturbation"],
        perturbation_log_ratio=numbers["perturbation_log_ratio"],
        perturbation_median=numbers["perturbation_median"],
        perturbation_win_rate=numbers["perturbation_win_rate"],
        accuracy=numbers["accuracy"],
        kind_counts={
            kind: len(results) if kind == "all" else int(np.sum(kinds == kind))
            for kind in columns.kind_order
        },
        confidence=_nest(intervals),
        resamples=resamples,
        perturbation_measure=perturbation_measure,
    )


def paired_differences(
    first: Sequence[ItemResult],
    second: Sequence[ItemResult],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    perturbation_measure: str = "perplexity",
) -> dict[str, Any]:
    """``first - second`` on every method number of the summary, paired over items.

    Two methods explained the same items (the same answers, the same masks), so their
    difference is measured on the same resamples of items: each bootstrap draw picks
    items once and recomputes both methods' numbers on them. The interval of a
    difference is then much narrower than the two methods' own intervals suggest when
    the methods agree item by item, and it is 0 wide when they are the same.

    Args:
        first: one method's results, one per item.
        second: the other method's results on the same items (matched by ``index``).
        seed: the bootstrap's seed.
        resamples: bootstrap resamples (0: every interval NaN).
        perturbation_measure: what the perturbation numbers measure, as in
            :func:`summarise` (it orients the win rates inside the numbers).

    Returns:
        ``{"difference": numbers, "confidence": intervals, "items": n}``: ``numbers``
        nested as :class:`Summary` nests them (``difference["grounding"]
        ["pointing_game"]["method"]``) without the chance lines and the accuracy, which
        do not depend on the method; ``intervals`` the 95% ``[low, high]`` of each.

    Raises:
        InputError: the two lists hold different items, or none.
    """
    by_index = [{result.index: result for result in results} for results in (first, second)]
    if not first or by_index[0].keys() != by_index[1].keys() or len(first) != len(second):
        raise InputError(
            f"paired_differences: the two methods must be scored on the same items, got "
            f"{len(first)} and {len(second)} results whose indices differ; evaluate both "
            "methods on the same dataset, split, seed and --limit."
        )
    order = sorted(by_index[0])
    better = PERTURBATION_BETTER[perturbation_measure]
    columns = [_Columns([results[index] for index in order], better) for results in by_index]

    def differences(rows: npt.NDArray[np.intp]) -> dict[tuple[str, ...], float]:
        one, other = (_leaves(column.numbers(rows)) for column in columns)
        return {
            path: one[path] - other[path]
            for path in one
            if path[0] != "accuracy" and not set(path) & set(CHANCE_LINES)
        }

    difference = differences(np.arange(len(order)))
    if resamples > 0:
        samples = [differences(rows) for rows in resample_indices(len(order), resamples, seed)]
        intervals = {
            path: percentile_interval([sample[path] for sample in samples]) for path in difference
        }
    else:
        intervals = {path: (math.nan, math.nan) for path in difference}
    return {"difference": _nest(difference), "confidence": _nest(intervals), "items": len(order)}


class _Columns:
    """Per-item arrays of everything the summary's numbers are made of."""

    def __init__(self, results: Sequence[ItemResult], better: Mapping[str, float]) -> None:
        count = len(results)
        self.better = better
        scored = np.array([r.error is None for r in results])
        self.scored = scored
        self.segmentation = {
            line: {metric: np.full(count, np.nan) for metric in SEGMENTATION_METRICS}
            for line in LINES
        }
        self.perturbation = {
            form: {
                line: {order: np.full(count, np.nan) for order in PERTURBATION_ORDERS}
                for line in PERTURBATION_LINES
            }
            for form in ("auc", "log_ratio")
        }
        self.tokens = np.zeros(count)
        self.hits = {line: np.zeros(count) for line in LINES}
        self.iou_sums = {line: np.zeros(count) for line in LINES}
        self.iou_counts = {line: np.zeros(count) for line in LINES}
        self.within_auroc = np.full(count, np.nan)
        self.wrong_tokens = np.zeros(count)  # object tokens of items with another object
        self.wrong_hits = {line: np.zeros(count) for line in LINES}
        self.contrast_tokens = np.zeros(count)
        self.inverted = {line: np.zeros(count) for line in INVERTED_LINES}
        # 1 where every delta of an explained answer is 0 (the sequence map's fallback)
        self.all_zero = np.array(
            [
                float(not any(r.token_weights)) if r.error is None and r.token_weights else np.nan
                for r in results
            ]
        )
        token_items: list[int] = []
        token_scores: list[float] = []
        token_labels: list[bool] = []
        for row, result in enumerate(results):
            if result.error is not None:
                continue
            for line in LINES:
                scores = result.segmentation if line == "method" else result.chance.get(line, {})
                for metric, value in scores.items():
                    self.segmentation[line][metric][row] = _finite_or_nan(value)
            forms = {"auc": result.perturbation, "log_ratio": result.perturbation_log_ratio}
            for form, lines in forms.items():
                for line, areas in lines.items():
                    for order, value in areas.items():
                        self.perturbation[form][line][order][row] = _finite_or_nan(value)
            for token in result.token_grounding:
                self.tokens[row] += 1
                hits = (token.pointing_game, token.uniform_pointing_chance)
                for line, hit in zip(LINES, (*hits, token.random_pointing_game)):
                    self.hits[line][row] += float(hit)
                for line, iou in zip(LINES, (token.iou, token.uniform_iou, token.random_iou)):
                    if math.isfinite(iou):
                        self.iou_sums[line][row] += iou
                        self.iou_counts[line][row] += 1
                self._add_wrong_object(row, token)
            classes = result.word_classes  # empty unless grounding was measured
            pairs = [
                (weight, kind == "object")
                for weight, kind in zip(result.token_weights[: len(classes)], classes, strict=True)
                if kind in ("object", "function")
            ]
            token_items += [row] * len(pairs)
            token_scores += [weight for weight, _ in pairs]
            token_labels += [label for _, label in pairs]
            labels = [label for _, label in pairs]
            if any(labels) and not all(labels):
                self.within_auroc[row] = auroc([w for w, _ in pairs], labels)
        self.token_items = np.array(token_items, dtype=np.intp)
        self.token_scores = np.array(token_scores, dtype=np.float64)
        self.token_labels = np.array(token_labels, dtype=bool)
        self.correct = np.array(
            [math.nan if r.correct is None else float(r.correct) for r in results]
        )
        self.kinds = np.array([r.kind for r in results])
        present = set(self.kinds.tolist())
        self.kind_order = [kind for kind in KINDS if kind in present]
        self.kind_order += sorted(present - set(self.kind_order))
        self.kind_order.append("all")

    def _add_wrong_object(self, row: int, token: TokenGrounding) -> None:
        """Count the token's wrong-object peak and inversion, where they are defined."""
        if token.wrong_object_peak is not None:
            self.wrong_tokens[row] += 1
            peaks = (
                float(token.wrong_object_peak),
                token.other_objects_area,  # the uniform line: the chance of a random point
                float(bool(token.random_wrong_object_peak)),
            )
            for line, peak in zip(LINES, peaks):
                self.wrong_hits[line][row] += peak
        if math.isfinite(token.contrast):
            self.contrast_tokens[row] += 1
            for line, contrast in zip(INVERTED_LINES, (token.contrast, token.random_contrast)):
                self.inverted[line][row] += float(contrast < 0)

    def numbers(self, rows: npt.NDArray[np.intp]) -> Numbers:
        """Every number of the summary over the items ``rows`` (repeats allowed)."""
        tokens = self.tokens[rows].sum()
        return {
            "segmentation": {
                line: {metric: _mean(values[rows]) for metric, values in scores.items()}
                for line, scores in self.segmentation.items()
            },
            "grounding": {
                "pointing_game": {
                    line: _ratio(self.hits[line][rows].sum(), tokens) for line in LINES
                },
                "iou": {
                    line: _ratio(self.iou_sums[line][rows].sum(), self.iou_counts[line][rows].sum())
                    for line in LINES
                },
                "wrong_object_peak": {
                    line: _ratio(self.wrong_hits[line][rows].sum(), self.wrong_tokens[rows].sum())
                    for line in LINES
                },
                "inverted": {
                    line: _ratio(self.inverted[line][rows].sum(), self.contrast_tokens[rows].sum())
                    for line in INVERTED_LINES
                },
            },
            "delta_auroc": {
                "auroc": self._pooled_auroc(rows),
                "auroc_within_answer": _mean(self.within_auroc[rows]),
                "all_zero_share": _mean(self.all_zero[rows]),
            },
            "perturbation": self._per_line("auc", rows, _mean),
            "perturbation_log_ratio": self._per_line("log_ratio", rows, _mean),
            "perturbation_median": {
                form: self._per_line(form, rows, _median) for form in self.perturbation
            },
            "perturbation_win_rate": {
                form: self._win_rates(form, rows) for form in self.perturbation
            },
            "accuracy": {
                kind: _mean(self.correct[rows] if kind == "all" else self._of_kind(rows, kind))
                for kind in self.kind_order
            },
        }

    def delta_counts(self) -> dict[str, int]:
        """How many tokens and answers the delta AUROC rests on (no interval)."""
        positives = int(self.token_labels.sum())
        return {
            "object_words": positives,
            "function_words": int(self.token_labels.size - positives),
            "answers": int(np.isfinite(self.within_auroc).sum()),
        }

    def _per_line(
        self, form: str, rows: npt.NDArray[np.intp], statistic: Any
    ) -> dict[str, dict[str, float]]:
        """``{line: {order: statistic}}`` of one perturbation form over the items ``rows``."""
        return {
            line: {order: statistic(values[rows]) for order, values in orders.items()}
            for line, orders in self.perturbation[form].items()
        }

    def _win_rates(self, form: str, rows: npt.NDArray[np.intp]) -> dict[str, dict[str, float]]:
        """``{baseline: {order: share}}``: the items on which the method beats each baseline.

        Paired per item; a tie counts half, and an item where either number is undefined
        is left out.
        """
        lines = self.perturbation[form]
        return {
            baseline: {
                order: _win_rate(
                    lines["method"][order][rows], lines[baseline][order][rows], self.better[order]
                )
                for order in PERTURBATION_ORDERS
            }
            for baseline in PERTURBATION_LINES[1:]
        }

    def _of_kind(self, rows: npt.NDArray[np.intp], kind: str) -> npt.NDArray[np.float64]:
        picked = rows[self.kinds[rows] == kind]
        return self.correct[picked]

    def _pooled_auroc(self, rows: npt.NDArray[np.intp]) -> float:
        if not self.token_items.size:
            return math.nan
        copies = np.bincount(rows, minlength=self.tokens.size)[self.token_items]
        labels = np.repeat(self.token_labels, copies)
        if labels.all() or not labels.any():
            return math.nan
        return auroc(np.repeat(self.token_scores, copies), labels)


def _finite_or_nan(value: float) -> float:
    return float(value) if math.isfinite(value) else math.nan


def _mean(values: npt.NDArray[np.float64]) -> float:
    """Mean of the finite values; NaN when there is none."""
    return _of_finite(values, np.mean)


def _median(values: npt.NDArray[np.float64]) -> float:
    """Median of the finite values; NaN when there is none."""
    return _of_finite(values, np.median)


def _of_finite(values: npt.NDArray[np.float64], statistic: Any) -> float:
    finite = values[np.isfinite(values)]
    return float(statistic(finite)) if finite.size else math.nan


def _win_rate(
    method: npt.NDArray[np.float64], baseline: npt.NDArray[np.float64], better: float
) -> float:
    """The share of items where ``better * (method - baseline) > 0``, ties counted half."""
    both = np.isfinite(method) & np.isfinite(baseline)
    if not both.any():
        return math.nan
    lead = better * (method[both] - baseline[both])
    return float(np.mean((lead > 0) + 0.5 * (lead == 0)))


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else math.nan


def _leaves(
    numbers: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], float]:
    """The numbers flattened to ``{(section, ..., name): value}``."""
    leaves: dict[tuple[str, ...], float] = {}
    for key, value in numbers.items():
        if isinstance(value, Mapping):
            leaves.update(_leaves(value, (*prefix, key)))
        else:
            leaves[(*prefix, key)] = value
    return leaves


def _nest(leaves: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    """The inverse of :func:`_leaves`; an interval ``(low, high)`` becomes ``[low, high]``."""
    nested: dict[str, Any] = {}
    for path, value in leaves.items():
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = list(value) if isinstance(value, tuple) else value
    return nested
