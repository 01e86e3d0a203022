"""The plain-text report of ``dexar evaluate``: one table per metric family, methods as rows.

Each number is followed by its 95% bootstrap interval in brackets; the chance lines
(uniform, random smooth) are rows under the methods. They come from the first method's
summary: every method answers the same items with the same model, and the chance maps
depend only on the item, the answer and the seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dexar_core.evaluation.run import (
    CHANCE_LINES,
    PERTURBATION_ORDERS,
    SEGMENTATION_METRICS,
    Summary,
)

__all__ = ["PAIRED_COLUMNS", "format_paired", "format_report"]

LINE_NAMES = {"uniform": "uniform", "random_smooth": "random smooth"}


def format_report(
    summaries: Mapping[str, Summary], not_supported: Mapping[str, str] | None = None
) -> str:
    """The tables of every measured metric family, for one or more methods' summaries.

    ``not_supported`` (method -> reason) lists the methods that could not run on the
    model, after the tables; ``summaries`` holds at least one method that did.
    """
    first = next(iter(summaries.values()))
    head = (
        f"{first.dataset}{', split ' + first.split if first.split else ''}: {first.items} "
        f"items, model {first.model_id}, seed {first.seed}; [95% bootstrap interval over "
        f"items, {first.resamples} resamples]"
    )
    skipped = ", ".join(f"{m} {s.skipped}" for m, s in summaries.items() if s.skipped)
    if skipped:
        head += f"\nnot explained (empty answer): {skipped}"
    parts = [head]
    if "segmentation" in first.metrics:
        parts.append(_segmentation(summaries, first))
    if "grounding" in first.metrics:
        parts.append(_grounding(summaries, first))
        parts.append(_delta(summaries))
    if "perturbation" in first.metrics:
        parts.append(_perturbation(summaries, first))
    notes = [f"{metric}: {reason}" for metric, reason in first.not_applicable.items()]
    notes += [
        f"{method}: not supported: {reason}" for method, reason in (not_supported or {}).items()
    ]
    if any(math.isfinite(value) for value in first.accuracy.values()):
        parts.append(
            _table(
                ("answer accuracy", *first.accuracy),
                [
                    (
                        "correct",
                        *(
                            _cell(first.accuracy, first.confidence["accuracy"], kind)
                            for kind in first.accuracy
                        ),
                    ),
                    ("items", *(str(n) for n in first.kind_counts.values())),
                ],
            )
        )
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts)


def _segmentation(summaries: Mapping[str, Summary], first: Summary) -> str:
    headers = ("sequence map vs union mask", *SEGMENTATION_METRICS[:3], "snr_db")
    rows = [
        (
            method,
            *(
                _cell(s.segmentation["method"], s.confidence["segmentation"]["method"], metric)
                for metric in SEGMENTATION_METRICS
            ),
        )
        for method, s in summaries.items()
    ]
    rows += [
        (
            LINE_NAMES[line],
            *(
                _cell(first.segmentation[line], first.confidence["segmentation"][line], metric)
                for metric in SEGMENTATION_METRICS
            ),
        )
        for line in CHANCE_LINES
    ]
    text = _table(headers, rows)
    undefined = {
        method: {metric: n for metric, n in s.undefined.items() if n}
        for method, s in summaries.items()
    }
    notes = [
        f"{method} " + ", ".join(f"{metric} {n}" for metric, n in counts.items())
        for method, counts in undefined.items()
        if counts
    ]
    if notes:
        text += "\n(left out as undefined: " + "; ".join(notes) + ")"
    return text


def _grounding(summaries: Mapping[str, Summary], first: Summary) -> str:
    def row(name: str, summary: Summary, line: str) -> tuple[str, ...]:
        numbers, bounds = summary.grounding, summary.confidence["grounding"]
        return (
            name,
            *(
                _cell(numbers.get(score, {}), bounds.get(score, {}), line)
                for score in ("pointing_game", "iou", "wrong_object_peak", "inverted")
            ),
        )

    rows = [row(method, s, "method") for method, s in summaries.items()]
    rows += [row(LINE_NAMES[line], first, line) for line in CHANCE_LINES]
    headers = (
        f"object-word tokens ({first.grounding['tokens']})",
        "pointing",
        "iou",
        f"wrong-object peak ({first.grounding.get('wrong_object_tokens', 0)})",
        "inverted",
    )
    text = _table(headers, rows)
    if first.grounding["absent"]:
        text += f"\n({first.grounding['absent']} object words named no object of their item)"
    return text


def _delta(summaries: Mapping[str, Summary]) -> str:
    first = next(iter(summaries.values())).delta_auroc
    headers = (
        f"delta AUROC, object vs function words ({first['object_words']} object, "
        f"{first['function_words']} function tokens; chance 0.5)",
        "pooled",
        f"within answers ({first['answers']})",
        "items with every delta 0",
    )
    rows = [
        (
            method,
            *(
                _cell(s.delta_auroc, s.confidence["delta_auroc"], key)
                for key in ("auroc", "auroc_within_answer", "all_zero_share")
            ),
        )
        for method, s in summaries.items()
    ]
    return _table(headers, rows)


def _perturbation(summaries: Mapping[str, Summary], first: Summary) -> str:
    """The mean AUCs and log-ratio areas, then each method's per-item medians and win rates.

    A similarity has no log-ratio (docs/method.md §11): its per-item table reads the AUCs.
    """
    if first.perturbation_measure == "similarity":  # similarity falls as perplexity rises
        fields: tuple[str, ...] = ("perturbation",)
        headers: tuple[str, ...] = (
            "perturbation, sim_r/sim_0 AUC",
            "positive (lower better)",
            "negative (higher better)",
        )
        form, label = "auc", "sim_r/sim_0 AUC"
        reading = "medians and win rates of the AUC"
    else:
        fields = ("perturbation", "perturbation_log_ratio")
        headers = (
            "perturbation, nPPL AUC",
            "positive (higher better)",
            "negative (lower better)",
            "log-ratio positive (higher)",
            "log-ratio negative (lower)",
        )
        form, label = "log_ratio", "log-ratio"
        reading = (
            "log-ratio: the area over r of ln(PPL_r / PPL_0) = the mean per-token NLL rise "
            "in nats, 0 when the removal changes nothing; unlike the nPPL AUC, a few items "
            "whose perplexity explodes cannot dominate it"
        )

    def row(name: str, summary: Summary, line: str) -> tuple[str, ...]:
        pairs = (
            _orders(getattr(summary, field), summary.confidence[field], line) for field in fields
        )
        return (name, *(cell for pair in pairs for cell in pair))

    rows = [row(method, s, "method") for method, s in summaries.items()]
    rows.append(row(LINE_NAMES["random_smooth"], first, "random_smooth"))
    per_item = [
        (
            method,
            *_orders(
                s.perturbation_median[form], s.confidence["perturbation_median"][form], "method"
            ),
            *_orders(
                s.perturbation_win_rate[form],
                s.confidence["perturbation_win_rate"][form],
                "random_smooth",
            ),
        )
        for method, s in summaries.items()
    ]
    per_item_headers = (
        f"per item, {label}",
        "median positive",
        "median negative",
        "positive beats random smooth",
        "negative beats random smooth",
    )
    note = f"({reading}. Win rates: paired per item, ties counted half.)"
    return f"{_table(headers, rows)}\n\n{_table(per_item_headers, per_item)}\n{note}"


def _orders(numbers: Mapping[str, Any], bounds: Mapping[str, Any], line: str) -> tuple[str, str]:
    """The positive and negative cells of one line of a perturbation section."""
    positive, negative = (
        _cell(numbers[line], bounds[line], order) for order in PERTURBATION_ORDERS
    )
    return positive, negative


PAIRED_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pointing", ("grounding", "pointing_game", "method")),
    ("wrong-object peak", ("grounding", "wrong_object_peak", "method")),
    ("inverted", ("grounding", "inverted", "method")),
    ("delta AUROC", ("delta_auroc", "auroc")),
    ("every delta 0", ("delta_auroc", "all_zero_share")),
    ("sequence best_iou", ("segmentation", "method", "best_iou")),
    ("perturbation positive", ("perturbation", "method", "positive")),
)
"""The paired table's columns: issue 21's faithfulness numbers and their place."""


def format_paired(reference: str, differences: Mapping[str, Mapping[str, Any]]) -> str:
    """The table of ``reference``'s paired differences against each other method.

    Args:
        reference: the method the differences are taken from (``dexar``).
        differences: other method -> :func:`~dexar_core.evaluation.summary.paired_differences`
            of ``reference`` minus that method.
    """
    first = next(iter(differences.values()))

    def found(numbers: Mapping[str, Any], path: tuple[str, ...]) -> Any:
        for key in path:
            numbers = numbers.get(key, {}) if isinstance(numbers, Mapping) else {}
        return numbers

    def measured(path: tuple[str, ...]) -> bool:  # a family not measured is NaN throughout
        values = [found(paired["difference"], path) for paired in differences.values()]
        return any(isinstance(value, float) and math.isfinite(value) for value in values)

    columns = [(name, path) for name, path in PAIRED_COLUMNS if measured(path)]
    rows = [
        (
            f"{reference} - {other}",
            *(
                _cell(
                    {"d": found(paired["difference"], path)},
                    {"d": found(paired["confidence"], path)},
                    "d",
                )
                for _, path in columns
            ),
        )
        for other, paired in differences.items()
    ]
    headers = (f"paired difference over {first['items']} items", *(name for name, _ in columns))
    return _table(headers, rows)


def _cell(numbers: Mapping[str, Any], bounds: Mapping[str, Sequence[float]], key: str) -> str:
    if key not in numbers:
        return "n/a"
    value = numbers[key]
    if value is None or not math.isfinite(value):
        return "n/a"
    low, high = bounds[key]
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    from dexar_core.cli.tables import format_table

    return format_table(headers, rows)
